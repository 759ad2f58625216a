"""A stand-in for the Python reference's user client (s2uc) and its mock
application controller (appctrl), as scistream-proto 1.2.1 behaves on the wire.
Written for our tests from reading the reference; none of its code is copied.

What it reproduces, call for call:
  * every call carries `authorization: <token>` metadata; a user who is not
    logged in sends the literal `INVALID_TOKEN` (the default here);
  * inbound-request: req PROD in a thread, 0.5 s later a Hello with role PROD
    listing REMOTE_IP:PORT for each receiver port, both results awaited 5 s,
    then UpdateTargets PROD with the req answer's prod_listeners;
  * prod-req: req PROD, answered once an application controller said Hello,
    then UpdateTargets PROD with the answer's prod_listeners;
  * outbound-request UID PROD_LSTN: req CONS in a thread, 0.5 s later a Hello
    with role PROD (not CONS) and the receivers to this consumer-side gateway,
    the req awaited 5 s, then UpdateTargets CONS with PROD_LSTN split on commas;
  * release UID;
  * appctrl UID S2CS TOKEN ROLE [CONTROLLER_IP]: the reference's mock
    controller, a Hello with the given token, tried up to 5 times 0.1 s apart.
Its error lines are the reference's (`Another GRPC error occurred: ...`,
`Error sending hello message: ...`, `Error during update: ...`,
`Error during release: ...`), so a test can assert that none was printed; its
exit codes are the reference's too (0 after most errors).

The control channel is TLS with the gateway's certificate as the root, as the
reference does (--server_cert, default server.crt); our s2cs's self-signed
certificate names localhost and 127.0.0.1, so grpcio verifies it for either.
--insecure (ours, not the reference's) speaks plain text to `s2cs start --insecure`.

Stubs: generated from proto/scistream.proto by protoc into
$SCISTREAM_PY_STUBS, or into a temporary directory when that is not set.
"""
import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto", "scistream.proto")
DEFAULT_RECEIVER_PORTS = "5074,5075,5076,37000,47000"
MOCK_UID = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"


def load_stubs():
    gen = os.environ.get("SCISTREAM_PY_STUBS")
    if not gen:
        gen = tempfile.mkdtemp(prefix="scistream-py-")
        proto_dir = os.path.dirname(os.path.abspath(PROTO))
        subprocess.run(
            ["protoc", f"-I{proto_dir}", f"--python_out={gen}", f"--grpc_out={gen}",
             "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", os.path.abspath(PROTO)],
            check=True,
        )
    sys.path.insert(0, gen)
    import grpc  # noqa: E402
    import scistream_pb2  # noqa: E402
    import scistream_pb2_grpc  # noqa: E402
    return grpc, scistream_pb2, scistream_pb2_grpc


grpc, pb, rpc = load_stubs()


def open_channel(args, target):
    if args.insecure:
        return grpc.insecure_channel(target)
    with open(args.server_cert, "rb") as f:
        roots = f.read()
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))


def auth(args):
    return (("authorization", args.token),)


def client_request(args, stub, uid, role):
    # As the reference: no deadline; any error but UNAUTHENTICATED is printed and gives None.
    try:
        print("started client request", flush=True)
        return stub.req(pb.Request(uid=uid, role=role, num_conn=args.num_conn, rate=args.rate), metadata=auth(args))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            print(f"Please obtain new credentials: {e.details()}", flush=True)
            sys.exit(1)
        print(f"Another GRPC error occurred: {e.details()}", flush=True)
        return None


def hello_request(args, stub, uid, role, listeners):
    msg = pb.Hello(uid=uid, role=role)
    msg.prod_listeners.extend(listeners)
    try:
        response = stub.hello(msg, metadata=auth(args))
        print("Hello message sent successfully", flush=True)
        return response
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            print(f"Please obtain new credentials: {e.details()}", flush=True)
            sys.exit(1)
        print(f"Error sending hello message: {e.details()}", flush=True)
        return None


def update(args, stub, uid, remote_listeners, role):
    try:
        stub.update(pb.UpdateTargets(uid=uid, remote_listeners=remote_listeners, role=role), metadata=auth(args))
    except Exception as e:  # the reference prints whatever went wrong, RpcError or not
        print(f"Error during update: {e}", flush=True)


def new_uid(args):
    return MOCK_UID if args.mock else str(uuid.uuid1())


def announce(args, uid, role):
    print("uid; s2cs; access_token; role")
    print(f"{uid} {args.s2cs} {args.token} {role}", flush=True)


def receivers(args):
    return [f"{args.remote_ip}:{port}" for port in args.receiver_ports.split(",")]


def cmd_inbound_request(args):
    try:
        with open_channel(args, args.s2cs) as channel:
            stub = rpc.ControlStub(channel)
            uid = new_uid(args)
            announce(args, uid, "PROD")
            with futures.ThreadPoolExecutor(max_workers=3) as pool:
                print("sending client request message", flush=True)
                req = pool.submit(client_request, args, stub, uid, "PROD")
                print("waiting for hello message", flush=True)
                time.sleep(0.5)
                print("sending for hello message", flush=True)
                hello = pool.submit(hello_request, args, stub, uid, "PROD", receivers(args))
                prod_resp = req.result(timeout=5)
                hello_resp = hello.result(timeout=5)
            if hello_resp is None:
                print("Request Failed, no Hello response", flush=True)
                return 0
            update(args, stub, uid, prod_resp.prod_listeners, "PROD")
            print(f"Listeners: {list(prod_resp.listeners)}", flush=True)
    except Exception as e:
        print(f"Error: {e}", file=sys.stderr, flush=True)
    return 0


def cmd_prod_req(args):
    with open_channel(args, args.s2cs) as channel:
        stub = rpc.ControlStub(channel)
        uid = new_uid(args)
        announce(args, uid, "PROD")
        print("waiting for hello message", flush=True)
        prod_resp = client_request(args, stub, uid, "PROD")
        print(prod_resp, flush=True)
        # As the reference: a failed req leaves None here, and the next line raises.
        update(args, stub, uid, prod_resp.prod_listeners, "PROD")
        print(list(prod_resp.listeners), flush=True)
    return 0


def cmd_outbound_request(args):
    with open_channel(args, args.s2cs) as channel:
        stub = rpc.ControlStub(channel)
        announce(args, args.uid, "CONS")
        with futures.ThreadPoolExecutor(max_workers=3) as pool:
            cons = pool.submit(client_request, args, stub, args.uid, "CONS")
            print("waiting for hello message", flush=True)
            time.sleep(0.5)
            # The reference sends role PROD here, to the consumer-side gateway.
            pool.submit(hello_request, args, stub, args.uid, "PROD", receivers(args))
            cons_resp = cons.result(timeout=5)
        if not cons_resp:
            print("Request failed", file=sys.stderr, flush=True)
            return 0
        print(f"Listeners: {list(cons_resp.listeners)}", flush=True)
        update(args, stub, args.uid, args.prod_lstn.split(","), "CONS")
    return 0


def cmd_release(args):
    try:
        with open_channel(args, args.s2cs) as channel:
            rpc.ControlStub(channel).release(pb.Release(uid=args.uid), metadata=auth(args))
            print("Release completed", flush=True)
    except Exception as e:
        print(f"Error during release: {e}", flush=True)
    return 0


def cmd_appctrl(args):
    hello = pb.Hello(uid=args.uid, role=args.role)
    if args.role == "PROD":
        try:
            ipaddress.ip_address(args.controller_ip)
        except ValueError:
            sys.exit("AppCtrl: controller_ip not valid try again")
        if args.listeners:
            hello.prod_listeners.extend(args.listeners.split(","))
        else:
            hello.prod_listeners.extend(f"{args.controller_ip}:{p}" for p in DEFAULT_RECEIVER_PORTS.split(","))
    with open_channel(args, args.s2cs_pos) as channel:
        stub = rpc.ControlStub(channel)
        print("AppCtrl: SENDING HELLO", flush=True)
        for _ in range(5):
            try:
                response = stub.hello(hello, metadata=(("authorization", args.access_token),))
                print("AppCtrl: Hello sent", flush=True)
                break
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    sys.exit(f"AppCtrl: Authentication error for server scope, please obtain new credentials: {e.details()}")
                print(f"AppCtrl WARNING: GRPC error occurred: {e.details()}", flush=True)
            time.sleep(0.1)
        else:
            sys.exit("AppCtrl: Failed after 5 attempts.")
    print(f"AppCtrl: listeners {list(response.listeners)}", flush=True)
    print("Created AppCtrl instance", flush=True)
    return 0


def main():
    top = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    def common(p, s2cs_default="localhost:5000"):
        p.add_argument("--server_cert", default="server.crt", help="the gateway's certificate, trusted as the root")
        p.add_argument("--insecure", action="store_true", help="plain-text control channel (not in the reference)")
        if s2cs_default is None:
            return  # appctrl: the gateway and the token are positional
        p.add_argument("--s2cs", default=s2cs_default)
        p.add_argument("--token", default="INVALID_TOKEN", help="the user's access token (INVALID_TOKEN: not logged in)")

    def stream_opts(p):
        p.add_argument("--num_conn", type=int, default=5)
        p.add_argument("--rate", type=int, default=10000)
        p.add_argument("--mock", default=False)
        p.add_argument("--scope", default="")

    p = sub.add_parser("inbound-request")
    common(p)
    stream_opts(p)
    p.add_argument("--remote_ip", default="localhost")
    p.add_argument("--receiver_ports", default=DEFAULT_RECEIVER_PORTS)
    p.set_defaults(run=cmd_inbound_request)

    p = sub.add_parser("prod-req")
    common(p)
    stream_opts(p)
    p.set_defaults(run=cmd_prod_req)

    p = sub.add_parser("outbound-request")
    common(p, "localhost:6000")
    stream_opts(p)
    p.add_argument("--remote_ip", default="localhost")
    p.add_argument("--receiver_ports", default=DEFAULT_RECEIVER_PORTS)
    p.add_argument("uid")
    p.add_argument("prod_lstn")
    p.set_defaults(run=cmd_outbound_request)

    p = sub.add_parser("release")
    common(p)
    p.add_argument("uid")
    p.set_defaults(run=cmd_release)

    p = sub.add_parser("appctrl", help="the reference's mock application controller")
    common(p, None)
    p.add_argument("uid")
    p.add_argument("s2cs_pos", metavar="s2cs")
    p.add_argument("access_token")
    p.add_argument("role")
    p.add_argument("controller_ip", nargs="?", default="127.0.0.1")
    p.add_argument("--listeners", default="", help="producer listeners to send instead of CONTROLLER_IP's five default ports (ours)")
    p.set_defaults(run=cmd_appctrl)

    args = top.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
