#!/usr/bin/env python3
"""Attestation test vectors for package identity, made without any Go code.

Writes, next to this script:
  attestation_v1.json       a v1 record signed the way the widely installed
                            Python package signs (Ed25519 over the UTF-8 bytes
                            of "agent_id:codebase_hash:config_hash:timestamp",
                            raw base64 key and signature)
  attestation_v2.json       a v2 record: Ed25519 over the RFC 8785 canonical
                            JSON of every member but "signature" (for records
                            of ASCII strings and small integers, RFC 8785 is
                            json.dumps with sorted keys and no white space)
  attestation_vectors.json  the seeds, public keys and signed messages

Ed25519 is deterministic, so the Go test re-creates both records from the
same seeds and checks they are byte-identical. CI does not run this script;
the outputs are committed. Needs the `cryptography` package:

  python3 gen_attestation_vectors.py            # (re)write the vectors
  python3 gen_attestation_vectors.py verify-v1 RECORD.json PUBKEY_B64
                                                # check a v1 record made
                                                # elsewhere (e.g. iatp attest
                                                # sign --v1) the package's way
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))

# Fixed seeds: SHA-256 of a label, so anyone can re-derive them.
CONTROL_PLANE_SEED = hashlib.sha256(b"iatp test vector: control plane").digest()
AGENT_SEED = hashlib.sha256(b"iatp test vector: agent").digest()
KEY_ID = "control-plane-test"
AGENT_ID = "banking-agent"
CODEBASE_HASH = "sha256:" + hashlib.sha256(b"codebase").hexdigest()
CONFIG_HASH = "sha256:" + hashlib.sha256(b"config").hexdigest()
TIMESTAMP = "2026-01-25T10:00:00.123456Z"
EXPIRES_AT = "2026-01-26T10:00:00.123456Z"


def b64(b):
    return base64.b64encode(b).decode()


def raw_public(private_key):
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def v1_message(rec):
    return f"{rec['agent_id']}:{rec['codebase_hash']}:{rec['config_hash']}:{rec['timestamp']}"


def canonical(obj):
    # RFC 8785 for objects of ASCII strings and integers.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write(name, text):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write(text)


def generate():
    cp = Ed25519PrivateKey.from_private_bytes(CONTROL_PLANE_SEED)
    agent = Ed25519PrivateKey.from_private_bytes(AGENT_SEED)

    v1 = {
        "agent_id": AGENT_ID,
        "codebase_hash": CODEBASE_HASH,
        "config_hash": CONFIG_HASH,
        "signature": "",
        "signing_key_id": KEY_ID,
        "timestamp": TIMESTAMP,
        "expires_at": EXPIRES_AT,
    }
    msg1 = v1_message(v1)
    v1["signature"] = b64(cp.sign(msg1.encode("utf-8")))

    v2 = {
        "agent_id": AGENT_ID,
        "codebase_hash": CODEBASE_HASH,
        "config_hash": CONFIG_HASH,
        "signature": "",
        "signing_key_id": KEY_ID,
        "timestamp": TIMESTAMP,
        "expires_at": EXPIRES_AT,
        "signature_version": 2,
        "verification_key": "ed25519:" + b64(raw_public(agent)),
    }
    unsigned = {k: v for k, v in v2.items() if k != "signature"}
    msg2 = canonical(unsigned)
    v2["signature"] = b64(cp.sign(msg2.encode("utf-8")))

    compact = dict(separators=(",", ":"))
    write("attestation_v1.json", json.dumps(v1, **compact) + "\n")
    write("attestation_v2.json", json.dumps(v2, **compact) + "\n")
    meta = {
        "control_plane_seed_hex": CONTROL_PLANE_SEED.hex(),
        "control_plane_public_key": b64(raw_public(cp)),
        "agent_seed_hex": AGENT_SEED.hex(),
        "agent_public_key": "ed25519:" + b64(raw_public(agent)),
        "signing_key_id": KEY_ID,
        "v1_message": msg1,
        "v2_message": msg2,
    }
    write("attestation_vectors.json", json.dumps(meta, indent=2) + "\n")


def verify_v1(record_path, public_b64):
    with open(record_path, encoding="utf-8") as f:
        rec = json.load(f)
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    pub.verify(base64.b64decode(rec["signature"]), v1_message(rec).encode("utf-8"))
    print("valid v1 signature for", rec["agent_id"])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "verify-v1":
        verify_v1(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 1:
        generate()
    else:
        sys.exit(__doc__)
