//! uniffi's bindgen CLI (`uniffi-bindgen generate --library libparti_ffi.so --language kotlin
//! --out-dir DIR`), built from the same uniffi version as the `parti-ffi` crate.

fn main() {
    uniffi::uniffi_bindgen_main()
}
