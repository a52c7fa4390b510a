//! What one connection may cost the server: how many may be open, how
//! long each may stay silent or take over a frame or an answer, and how
//! large a frame may be.

use crate::config::ServerConfig;
use std::time::Duration;

/// Resource limits of connections (see [`ServerConfig`] for each).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub first_frame_timeout: Duration,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub write_timeout: Duration,
    pub max_frame: usize,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            first_frame_timeout: c.first_frame_timeout,
            idle_timeout: c.idle_timeout,
            frame_timeout: c.frame_timeout,
            write_timeout: c.write_timeout,
            max_frame: c.max_frame_size,
        }
    }
}
