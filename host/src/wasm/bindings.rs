//! The host's one `bindgen!`: types and traits for `sluice:plugin@0.1.0`,
//! generated from `wit/` for the `plugin-host` world (the union of every
//! plugin world). Everything else uses these types through this module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin-host",
    imports: { default: trappable },
    with: {
        "sluice:plugin/tables.table": crate::wasm::host::OpenTable,
        "sluice:plugin/sets.byte-set": crate::wasm::sets::ByteSet,
    },
});

pub use self::exports::sluice::plugin::{
    filter_api, packed_filter_api, packed_transform_api, transform_api,
};
pub use self::sluice::plugin::{log, packed_types, presence, sets, state, tables, types};
