//! Role × permission: the one place that says who may do what.

use serde::{Deserialize, Serialize};

/// A staff member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Finance,
    Support,
    Compliance,
    Analyst,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Finance, Role::Support, Role::Compliance, Role::Analyst];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Support => "support",
            Role::Compliance => "compliance",
            Role::Analyst => "analyst",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = ();

    fn from_str(text: &str) -> Result<Role, ()> {
        Role::ALL.into_iter().find(|role| role.as_str() == text).ok_or(())
    }
}

/// Something a back-office route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Players, their balances and history.
    ReadPlayers,
    /// Create players from the back office.
    CreatePlayers,
    /// Block and unblock.
    ChangeStatus,
    /// Back-office deposits and withdrawals (staff adjustments).
    MoveMoney,
    /// KYC tiers.
    ChangeKyc,
    /// Read players' limits and lower them.
    LowerLimits,
    /// Time-outs and self-exclusions.
    Exclusions,
    /// RTP reports.
    ReadReports,
    /// The audit trail and its verification.
    ReadAudit,
    /// Staff of the caller's scope.
    ManageStaff,
    /// Bonus campaigns, grants and the game catalogue.
    ManageBonuses,
    /// Operators and their documents: platform admins only.
    ManageOperators,
    /// Provider keys: platform admins only.
    ManageProviderKeys,
    /// Reconciliation runs: platform admins only.
    Reconcile,
}

impl Permission {
    pub const ALL: [Permission; 14] = [
        Permission::ReadPlayers,
        Permission::CreatePlayers,
        Permission::ChangeStatus,
        Permission::MoveMoney,
        Permission::ChangeKyc,
        Permission::LowerLimits,
        Permission::Exclusions,
        Permission::ReadReports,
        Permission::ReadAudit,
        Permission::ManageStaff,
        Permission::ManageBonuses,
        Permission::ManageOperators,
        Permission::ManageProviderKeys,
        Permission::Reconcile,
    ];

    /// The name the console knows the permission by.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadPlayers => "read_players",
            Permission::CreatePlayers => "create_players",
            Permission::ChangeStatus => "change_status",
            Permission::MoveMoney => "move_money",
            Permission::ChangeKyc => "change_kyc",
            Permission::LowerLimits => "lower_limits",
            Permission::Exclusions => "exclusions",
            Permission::ReadReports => "read_reports",
            Permission::ReadAudit => "read_audit",
            Permission::ManageStaff => "manage_staff",
            Permission::ManageBonuses => "manage_bonuses",
            Permission::ManageOperators => "manage_operators",
            Permission::ManageProviderKeys => "manage_provider_keys",
            Permission::Reconcile => "reconcile",
        }
    }
}

/// Whether a caller of `role` (platform-wide when `platform`) may do `permission`.
pub fn allows(role: Role, platform: bool, permission: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match permission {
        ManageOperators | ManageProviderKeys | Reconcile => platform && role == Admin,
        ReadPlayers => matches!(role, Admin | Finance | Support | Compliance),
        CreatePlayers | ManageStaff | ManageBonuses => role == Admin,
        ChangeStatus | LowerLimits => matches!(role, Admin | Support | Compliance),
        MoveMoney => matches!(role, Admin | Finance),
        ChangeKyc | Exclusions | ReadAudit => matches!(role, Admin | Compliance),
        ReadReports => matches!(role, Admin | Finance | Analyst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roles_of_the_contract() {
        use Permission::*;
        let may = |role, permission| allows(role, false, permission);
        assert!(
            may(Role::Finance, MoveMoney)
                && may(Role::Finance, ReadReports)
                && !may(Role::Finance, ChangeStatus)
        );
        assert!(
            may(Role::Support, ChangeStatus)
                && may(Role::Support, LowerLimits)
                && !may(Role::Support, ChangeKyc)
        );
        assert!(
            may(Role::Compliance, ChangeKyc)
                && may(Role::Compliance, ReadAudit)
                && !may(Role::Compliance, MoveMoney)
        );
        assert!(may(Role::Analyst, ReadReports) && !may(Role::Analyst, ReadPlayers));
        assert!(!may(Role::Admin, ManageOperators), "operators are for platform admins only");
        assert!(allows(Role::Admin, true, ManageOperators) && !allows(Role::Finance, true, Reconcile));
    }
}
