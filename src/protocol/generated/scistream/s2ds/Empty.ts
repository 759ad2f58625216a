// Original file: proto/s2ds.proto


export interface Empty {
}

export interface Empty__Output {
}
