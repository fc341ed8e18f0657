//! Layer 3: the allowlisting egress proxy that sandboxes reach the network through (not yet built).
#![forbid(unsafe_code)]
