//! Whether a client is connected to an SSE sink (on any Sluice instance,
//! when the sink is backed by Redis): skip work for clients nobody listens
//! as.
//!
//! Under a native `cargo test`, [`crate::testing::set_connected`] decides.

use std::sync::OnceLock;

static BACKEND: OnceLock<fn(&str) -> bool> = OnceLock::new();

/// Points the check at the host. Called by the generated bindings.
#[doc(hidden)]
pub fn set_backend(backend: fn(&str) -> bool) {
    let _ = BACKEND.set(backend);
}

/// Whether `client` has an SSE connection open.
pub fn connected(client: &str) -> bool {
    match BACKEND.get() {
        Some(backend) => backend(client),
        #[cfg(not(target_arch = "wasm32"))]
        None => crate::testing::is_connected(client),
        // Every export macro sets the backend in `init`; before that, no
        // client is known to be connected.
        #[cfg(target_arch = "wasm32")]
        None => false,
    }
}
