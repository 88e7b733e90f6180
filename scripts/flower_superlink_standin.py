"""A stand-in for a Flower SuperLink's Fleet API, doing Flower's own
per-call node authentication in Python, for scripts/bench-gateway.sh.

Written from docs/protocol.md, "Node authentication", as Flower's SuperLink interceptor does
it (CSV era): for every call under /flwr.proto.Fleet/, the three flwr-*
headers must be present; the PEM key must be byte-equal to an allowed key;
the ECDSA/SHA-256 signature over the timestamp must verify (cryptography,
parsing the PEM key on every call, as Flower does); and
-5 < now - timestamp < 305. Each failure aborts with UNAUTHENTICATED and
Flower's message. An accepted call gets its request bytes back.

Usage: flower_superlink_standin.py ALLOWLIST.csv ADDRESS [CERT KEY]
Serves TLS with CERT and KEY if given, else plaintext. Prints "ready" once
listening. Uses Debian's python3-grpcio and python3-cryptography.
"""
import csv
import sys
from concurrent import futures
from datetime import datetime, timezone

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

FLEET = "/flwr.proto.Fleet/"


def load_allowlist(path):
    allowed = set()
    with open(path, newline="") as f:
        for row in csv.reader(f):
            for element in row:
                key = serialization.load_ssh_public_key(element.encode())
                allowed.add(key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return allowed


class Handler(grpc.GenericRpcHandler):
    def __init__(self, allowed):
        self.allowed = allowed

    def service(self, details):
        method = details.method
        if not method.startswith(FLEET):
            return None
        allowed = self.allowed

        def unary(request, context):
            md = {}
            for k, v in context.invocation_metadata():
                md[k] = v  # the last value wins, as in Flower
            pem = md.get("flwr-public-key-bin")
            ts = md.get("flwr-timestamp")
            sig = md.get("flwr-signature-bin")
            if not pem or not ts or not sig:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "Missing authentication metadata")
            if pem not in allowed:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "Public key not recognized")
            try:
                key = serialization.load_pem_public_key(pem)
                key.verify(sig, ts.encode("ascii"), ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "Invalid signature")
            try:
                diff = (datetime.now(timezone.utc) - datetime.fromisoformat(ts)).total_seconds()
            except (ValueError, TypeError):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "Invalid timestamp")
            if not -5 < diff < 305:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "Invalid timestamp")
            return request

        return grpc.unary_unary_rpc_method_handler(unary)


def main():
    allowlist, address = sys.argv[1], sys.argv[2]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((Handler(load_allowlist(allowlist)),))
    if len(sys.argv) > 4:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(address, creds)
    else:
        server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
