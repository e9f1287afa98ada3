#!/usr/bin/env python3
"""Encrypt a PIN the way a partner does before sending it to cardcore.

  pin-tool.py rsa  --pem PUBLIC_KEY.pem --pin 4821          -> base64 RSA-OAEP-SHA256 (MGF1-SHA256)
  pin-tool.py iso4 --key AES_KEY_HEX --pan PAN --pin 4821   -> hex ISO 9564 format-4 block (AES)
  pin-tool.py iso0 --key TDES_KEY_HEX --pan PAN --pin 4821  -> hex ISO 9564 format-0 block (TDES)

Needs the `cryptography` package (pip install cryptography).
"""
import argparse
import base64
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # cryptography >= 43 keeps TDES among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES


def rsa(pem: str, pin: str) -> str:
    key = serialization.load_pem_public_key(open(pem, "rb").read())
    ct = key.encrypt(
        pin.encode(),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    return base64.b64encode(ct).decode()


def ecb(algorithm, data: bytes, decrypt=False) -> bytes:
    c = Cipher(algorithm, modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def iso4(key_hex: str, pan: str, pin: str) -> str:
    key = bytes.fromhex(key_hex)
    pin_field = bytes.fromhex(("4%X" % len(pin) + pin).ljust(16, "A")) + os.urandom(8)
    m = max(len(pan) - 12, 0)
    pan_field = bytes.fromhex((str(m) + pan.rjust(12, "0")).ljust(32, "0"))
    inner = ecb(algorithms.AES(key), pin_field)
    return ecb(algorithms.AES(key), bytes(a ^ b for a, b in zip(inner, pan_field))).hex().upper()


def iso0(key_hex: str, pan: str, pin: str) -> str:
    key = bytes.fromhex(key_hex)
    pin_field = bytes.fromhex(("0%X" % len(pin) + pin).ljust(16, "F"))
    pan_field = bytes.fromhex("0000" + pan[-13:-1])
    clear = bytes(a ^ b for a, b in zip(pin_field, pan_field))
    return ecb(TripleDES(key), clear).hex().upper()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("form", choices=["rsa", "iso4", "iso0"])
    p.add_argument("--pin", required=True)
    p.add_argument("--pem")
    p.add_argument("--key")
    p.add_argument("--pan")
    a = p.parse_args()
    if a.form == "rsa":
        print(rsa(a.pem, a.pin))
    elif a.form == "iso4":
        print(iso4(a.key, a.pan, a.pin))
    else:
        print(iso0(a.key, a.pan, a.pin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
