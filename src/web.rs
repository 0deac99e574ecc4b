//! The browser binding (wasm-bindgen): the only module that touches web-sys.
