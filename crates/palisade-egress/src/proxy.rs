//! The forward proxy: one client connection speaking HTTP/1.1 — plain-HTTP requests forwarded, `CONNECT` tunnels spliced once the ClientHello's SNI matches.
