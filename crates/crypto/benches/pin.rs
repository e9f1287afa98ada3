//! The PIN verification core, per operation on one core:
//! `cargo bench -p cardcore-crypto --bench pin`.
//!
//! - `format4_decode_and_verify`: what a PIN-block verification costs:
//!   AES decrypt of an ISO 9564 format-4 block bound to the PAN, then the
//!   HMAC-SHA256 verification value compared in constant time;
//! - `format0_decode`: TDES decrypt and decode of a format-0 block;
//! - `hmac_verify`: the keyed verification value alone (a plain-PIN verify);
//! - `rsa_oaep_decrypt`: an `encrypted_pin` (RSA-2048 OAEP-SHA256).

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use cardcore_crypto::pinblock::{self, Format4Key, Format4PanField, TdesFormat};
use cardcore_crypto::transport::{encrypt_with_public_pem, TransportKey};
use cardcore_crypto::verifier::{label, MacKey};
use cardcore_crypto::{Pan, Pin, SecretBytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn benches(c: &mut Criterion) {
    let rng = &mut rand::rngs::OsRng;
    let pan = Pan::parse("4242421234567890").expect("pan");
    let pin = Pin::parse("4821").expect("pin");
    let card_id = [7u8; 16];
    let mac = MacKey::new(&SecretBytes::from_slice(&[9u8; 32])).expect("mac key");
    let stored = mac.compute(label::PIN, &[&card_id, pin.expose_bytes()]);

    let aes = [0x11u8; 16];
    let f4key = Format4Key::new(&aes).expect("aes key");
    let f4pan = Format4PanField::new(&pan);
    let block4 = f4key.encrypt(&pin, &f4pan, rng);

    let tdes = [0x22u8; 16];
    let block0 = pinblock::encrypt_tdes(&tdes, TdesFormat::Format0, &pin, &pan, rng).expect("block");

    let mut g = c.benchmark_group("pin");
    g.throughput(Throughput::Elements(1));
    g.bench_function("format4_decode_and_verify", |b| {
        b.iter(|| {
            let pan_field = Format4PanField::new(black_box(&pan));
            let p = f4key.decrypt(black_box(&block4), &pan_field).expect("decodes");
            black_box(mac.verify(label::PIN, &[&card_id, p.expose_bytes()], &stored))
        })
    });
    g.bench_function("format0_decode", |b| {
        b.iter(|| {
            black_box(pinblock::decrypt_tdes(&tdes, TdesFormat::Format0, black_box(&block0), &pan).expect("decodes"))
        })
    });
    g.bench_function("hmac_verify", |b| {
        b.iter(|| black_box(mac.verify(label::PIN, &[&card_id, black_box(pin.expose_bytes())], &stored)))
    });
    let der = TransportKey::generate_pkcs8().expect("rsa key");
    let key = TransportKey::from_pkcs8(&der).expect("rsa key");
    let ct = encrypt_with_public_pem(key.public_key_pem(), b"4821").expect("encrypt");
    g.bench_function("rsa_oaep_decrypt", |b| {
        b.iter(|| black_box(key.decrypt_pin(black_box(&ct)).expect("decrypts")))
    });
    g.finish();
}

criterion_group!(pin_benches, benches);
criterion_main!(pin_benches);
