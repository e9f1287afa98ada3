//! Tenants: each card program operator, isolated from every other.

use serde::Serialize;

use crate::ids::{ProgramId, TenantId};
use crate::Timestamp;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// The program cards get when none is given.
    pub default_program_id: ProgramId,
    pub created_at: Timestamp,
}

/// Tenant names: 1 to 64 characters of letters, digits, space and `-_.`
/// (M2P sends the name as `X-TENANT-ID`, so it must travel in a header).
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if name != name.trim() || !name.chars().all(|c| c.is_ascii_alphanumeric() || " -_.".contains(c)) {
        return Err("may contain only letters, digits, spaces and - _ . (no leading or trailing space)");
    }
    Ok(())
}
