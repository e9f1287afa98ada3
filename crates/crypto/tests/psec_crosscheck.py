#!/usr/bin/env python3
"""Reference side of tests/psec_crosscheck.rs.

Reads one JSON case per line on stdin, answers one JSON line per case on
stdout, in order, computed with the `psec` package (PyPI) and, for AES key
check values, the `cryptography` package psec depends on. The first output
line is a header naming the psec version. Binary values travel as uppercase
hex. A case psec rejects is answered with {"error": "..."}; the Rust side
decides what that means.
"""

import json
import sys
import warnings

# psec 1.3 calls TripleDES through a path cryptography marks deprecated; the
# warnings say nothing about the results and would clutter the test output.
warnings.simplefilter("ignore")

try:
    from importlib.metadata import version

    from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms
    from cryptography.hazmat.primitives.cmac import CMAC
    from psec import aes, cvv, des, pin, pinblock, tools
except ImportError as exc:  # the Rust side checks first; this is a backstop
    print(f"psec_crosscheck.py: cannot import psec: {exc}", file=sys.stderr)
    sys.exit(3)


def h(b: bytes) -> str:
    return b.hex().upper()


def b(s: str) -> bytes:
    return bytes.fromhex(s)


def iso0(c):
    key, clear = b(c["key"]), pinblock.encode_pinblock_iso_0(c["pin"], c["pan"])
    return {
        "clear": h(clear),
        "enc": h(des.encrypt_tdes_ecb(key, clear)),
        "decoded": pinblock.decode_pinblock_iso_0(
            des.decrypt_tdes_ecb(key, b(c["ours"])), c["pan"]
        ),
    }


def iso3(c):
    key = b(c["key"])
    theirs = pinblock.encode_pinblock_iso_3(c["pin"], c["pan"])
    return {
        "enc": h(des.encrypt_tdes_ecb(key, theirs)),
        "decoded": pinblock.decode_pinblock_iso_3(
            des.decrypt_tdes_ecb(key, b(c["ours"])), c["pan"]
        ),
    }


def iso4(c):
    key, pan = b(c["key"]), c["pan"]
    # psec draws the random half itself; to compare blocks bit for bit, build
    # the PIN field from psec's encoder and our fill, then chain psec's AES.
    pin_field = pinblock.encode_pin_field_iso_4(c["pin"])[:8] + b(c["fill"])
    pan_field = pinblock.encode_pan_field_iso_4(pan)
    intermediate = tools.xor(aes.encrypt_aes_ecb(key, pin_field), pan_field)
    return {
        "with_fill": h(aes.encrypt_aes_ecb(key, intermediate)),
        "pan_field": h(pan_field),
        "enc": h(pinblock.encipher_pinblock_iso_4(key, c["pin"], pan)),
        "decoded": pinblock.decipher_pinblock_iso_4(key, b(c["ours"]), pan),
    }


def pvv(c):
    return {"pvv": pin.generate_visa_pvv(b(c["pvk"]), c["pvki"], c["pin"], c["pan"])}


def ibm3624(c):
    args = (c["pan"], c["start"], c["length"], c["pad"])
    pvk, table = b(c["pvk"]), c["table"]
    return {
        "offset": pin.generate_ibm3624_offset(pvk, table, c["pin"], *args),
        "pin_from_our_offset": pin.generate_ibm3624_pin(pvk, table, c["ours"], *args),
    }


def cvv_(c):
    return {"cvv": cvv.generate_cvv(b(c["cvk"]), c["pan"], c["expiry"], c["sc"])}


def kcv_tdes(c):
    return {"kcv": h(des.generate_kcv(b(c["key"]), 3))}


def kcv_aes(c):
    key = b(c["key"])
    mac = CMAC(_algorithms.AES(key))
    mac.update(bytes(16))
    return {
        "ecb": h(aes.encrypt_aes_ecb(key, bytes(16))[:3]),
        "cmac": h(mac.finalize()[:3]),
    }


HANDLERS = {
    "iso0": iso0,
    "iso3": iso3,
    "iso4": iso4,
    "pvv": pvv,
    "ibm3624": ibm3624,
    "cvv": cvv_,
    "kcv_tdes": kcv_tdes,
    "kcv_aes": kcv_aes,
}


def main() -> None:
    out = [json.dumps({"psec_version": version("psec")})]
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            answer = HANDLERS[case["alg"]](case)
        except ValueError as exc:
            answer = {"error": str(exc)}
        answer["id"] = case["id"]
        out.append(json.dumps(answer))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
