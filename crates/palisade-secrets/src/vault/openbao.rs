//! OpenBao / HashiCorp Vault KV v2 as a vault (being written; see the secrets issue).
