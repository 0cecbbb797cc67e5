//! Export runs against the fake server.
