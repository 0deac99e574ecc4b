//! Conversions between JS values and the session's types: errors as JS `Error`s, serde types to
//! and from plain objects, and the small result objects some calls resolve to.

use serde::Serialize;
use wasm_bindgen::JsValue;

use crate::session::SampleOptions;
use crate::Error;

/// A JS `Error` with the message a person reads.
pub fn error(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

pub fn to_value(value: &impl Serialize) -> Result<JsValue, JsValue> {
    serde_wasm_bindgen::to_value(value).map_err(JsValue::from)
}

/// The page's sampling options; undefined or null: one step, any digit.
pub fn sample_options(value: JsValue) -> crate::Result<SampleOptions> {
    if value.is_undefined() || value.is_null() {
        return Ok(SampleOptions::default());
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| Error::Invalid(format!("sampling options: {e}")))
}

/// A plain object with these properties.
pub fn object(properties: &[(&str, JsValue)]) -> Result<js_sys::Object, JsValue> {
    let out = js_sys::Object::new();
    for (name, value) in properties {
        js_sys::Reflect::set(&out, &JsValue::from_str(name), value)?;
    }
    Ok(out)
}

/// A JS array of the items' values.
pub fn array<T: Clone + Into<JsValue>>(items: &[T]) -> js_sys::Array {
    items.iter().cloned().map(Into::into).collect()
}
