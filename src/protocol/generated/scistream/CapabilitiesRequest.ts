// Original file: proto/scistream.proto


export interface CapabilitiesRequest {
}

export interface CapabilitiesRequest__Output {
}
