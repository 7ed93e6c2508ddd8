//! In-process examples of entitle; see `examples/`. The library holds what an example is
//! too big to keep in one file: the licensed RADIUS server of [`radius_server`].
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod radius_server;
