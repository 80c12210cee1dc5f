//! Procedural macros behind `sluice_sdk::export_filter!`, `#[sluice_sdk::filter]`
//! and friends. Use them through `sluice-sdk`, which re-exports them.
//!
//! They exist as proc-macros (not `macro_rules!`) for one reason: the WIT
//! bindings must be generated inside the plugin crate, for exactly one world.
//! wit-component merges every world whose type section is linked into a
//! module, so an SDK that generated all worlds itself would force every plugin
//! to export everything. A proc-macro knows where its own `wit/` folder is
//! (the WIT ships inside this crate) and can hand `wit_bindgen::generate!`
//! an absolute path, wherever the SDK sits on disk.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{ItemFn, Path, parse_macro_input};

#[derive(Clone, Copy)]
enum World {
    Filter,
    Transform,
    Join,
}

/// Exports a type implementing `sluice_sdk::Filter` as the plugin.
#[proc_macro]
pub fn export_filter(input: TokenStream) -> TokenStream {
    let ty = parse_macro_input!(input as Path);
    export(World::Filter, &ty).into()
}

/// Exports a type implementing `sluice_sdk::Transform` as the plugin.
#[proc_macro]
pub fn export_transform(input: TokenStream) -> TokenStream {
    let ty = parse_macro_input!(input as Path);
    export(World::Transform, &ty).into()
}

/// Exports a type implementing `sluice_sdk::Transform` as a join plugin, which
/// may read tables.
#[proc_macro]
pub fn export_join(input: TokenStream) -> TokenStream {
    let ty = parse_macro_input!(input as Path);
    export(World::Join, &ty).into()
}

/// Turns `fn name(record: &Record<'_>) -> bool` (or `Result<bool, E>`) into
/// the plugin's filter. The function stays callable, for tests.
#[proc_macro_attribute]
pub fn filter(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let name = &func.sig.ident;
    let ty = format_ident!("__SluiceFnFilter");
    let ty_path: Path = syn::parse_quote!(#ty);
    let export = export(World::Filter, &ty_path);
    quote! {
        #func
        #[doc(hidden)]
        pub struct #ty;
        impl ::sluice_sdk::Filter for #ty {
            type Config = ::sluice_sdk::NoConfig;
            fn init(_: ::sluice_sdk::NoConfig) -> ::std::result::Result<Self, ::sluice_sdk::InitError> {
                ::std::result::Result::Ok(Self)
            }
            fn keep(&mut self, record: &::sluice_sdk::Record<'_>) -> ::std::result::Result<bool, ::sluice_sdk::Error> {
                ::sluice_sdk::IntoKeep::into_keep(#name(record))
            }
        }
        #export
    }
    .into()
}

/// Turns `fn name(record: &Record<'_>, out: &mut Output)` (returning `()` or
/// `Result<(), E>`) into the plugin's transform. The function stays callable.
#[proc_macro_attribute]
pub fn transform(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let name = &func.sig.ident;
    let ty = format_ident!("__SluiceFnTransform");
    let ty_path: Path = syn::parse_quote!(#ty);
    let export = export(World::Transform, &ty_path);
    quote! {
        #func
        #[doc(hidden)]
        pub struct #ty;
        impl ::sluice_sdk::Transform for #ty {
            type Config = ::sluice_sdk::NoConfig;
            fn init(_: ::sluice_sdk::NoConfig) -> ::std::result::Result<Self, ::sluice_sdk::InitError> {
                ::std::result::Result::Ok(Self)
            }
            fn transform(
                &mut self,
                record: &::sluice_sdk::Record<'_>,
                out: &mut ::sluice_sdk::Output,
            ) -> ::std::result::Result<(), ::sluice_sdk::Error> {
                ::sluice_sdk::IntoDone::into_done(#name(record, out))
            }
        }
        #export
    }
    .into()
}

fn export(world: World, ty: &Path) -> Tokens {
    // The WIT ships inside this crate (`wit/`), so a packaged SDK or a
    // plugin crate anywhere on disk builds against the same interfaces.
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/wit");
    let (world_name, iface) = match world {
        World::Filter => ("filter", quote!(filter_api)),
        World::Transform => ("transform", quote!(transform_api)),
        World::Join => ("join", quote!(transform_api)),
    };
    let tables_with = match world {
        World::Join => quote! {
            "sluice:plugin/tables@0.1.0/table-error": ::sluice_sdk::tables::TableError,
            "sluice:plugin/tables@0.1.0/lookup": ::sluice_sdk::tables::Lookup,
        },
        _ => quote! {},
    };
    let methods = match world {
        World::Filter => quote! {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::sluice_sdk::InitError> {
                __setup();
                ::sluice_sdk::__private::init_filter::<super::#ty>(&config)
            }
            fn filter(input: ::sluice_sdk::FlatBatch) -> ::sluice_sdk::FilterOutcome {
                ::sluice_sdk::__private::filter(&input)
            }
        },
        World::Transform | World::Join => quote! {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::sluice_sdk::InitError> {
                __setup();
                ::sluice_sdk::__private::init_transform::<super::#ty>(&config)
            }
            fn transform(input: ::sluice_sdk::FlatBatch) -> ::sluice_sdk::TransformOutcome {
                ::sluice_sdk::__private::transform(&input)
            }
        },
    };
    let tables_setup = match world {
        World::Join => quote! {
            struct __Tables;
            impl ::sluice_sdk::tables::Backend for __Tables {
                fn open(
                    &self,
                    name: &str,
                ) -> ::std::result::Result<
                    ::std::boxed::Box<dyn ::sluice_sdk::tables::Handle>,
                    ::sluice_sdk::tables::TableError,
                > {
                    sluice::plugin::tables::Table::open(name).map(|t| {
                        ::std::boxed::Box::new(__Table(t))
                            as ::std::boxed::Box<dyn ::sluice_sdk::tables::Handle>
                    })
                }
            }
            struct __Table(sluice::plugin::tables::Table);
            impl ::sluice_sdk::tables::Handle for __Table {
                fn get(&self, key: &[u8]) -> ::std::option::Option<::std::vec::Vec<u8>> {
                    self.0.get(key)
                }
                fn get_many(&self, keys: &[u8], key_ends: &[u32]) -> ::sluice_sdk::tables::Lookup {
                    self.0.get_many(keys, key_ends)
                }
            }
            ::sluice_sdk::tables::set_backend(&__Tables);
        },
        _ => quote! {},
    };
    quote! {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unsafe_code, clippy::all, missing_docs)]
        mod __sluice_export {
            ::sluice_sdk::__private::wit_bindgen::generate!({
                path: #wit,
                world: #world_name,
                runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
                with: {
                    "sluice:plugin/types@0.1.0/batch": ::sluice_sdk::FlatBatch,
                    "sluice:plugin/types@0.1.0/origin": ::sluice_sdk::Origin,
                    "sluice:plugin/types@0.1.0/record-error": ::sluice_sdk::RecordError,
                    "sluice:plugin/types@0.1.0/filter-result": ::sluice_sdk::FilterOutcome,
                    "sluice:plugin/types@0.1.0/transform-result": ::sluice_sdk::TransformOutcome,
                    "sluice:plugin/types@0.1.0/init-error": ::sluice_sdk::InitError,
                    "sluice:plugin/state@0.1.0/state-error": ::sluice_sdk::state::StateError,
                    #tables_with
                },
                generate_all,
            });

            fn __setup() {
                fn sink(level: ::sluice_sdk::log::Level, message: &str) {
                    use sluice::plugin::log::{Level, log};
                    let level = match level {
                        ::sluice_sdk::log::Level::Trace => Level::Trace,
                        ::sluice_sdk::log::Level::Debug => Level::Debug,
                        ::sluice_sdk::log::Level::Info => Level::Info,
                        ::sluice_sdk::log::Level::Warn => Level::Warn,
                        ::sluice_sdk::log::Level::Error => Level::Error,
                    };
                    log(level, message);
                }
                ::sluice_sdk::log::set_sink(sink);
                fn presence(client: &str) -> bool {
                    sluice::plugin::presence::connected(client)
                }
                ::sluice_sdk::presence::set_backend(presence);
                ::sluice_sdk::state::set_backend(::sluice_sdk::state::Backend {
                    get: sluice::plugin::state::get,
                    put: sluice::plugin::state::put,
                    delete: sluice::plugin::state::delete,
                });
                #tables_setup
            }

            struct __Export;
            impl exports::sluice::plugin::#iface::Guest for __Export {
                #methods
            }
            export!(__Export);
        }
    }
}
