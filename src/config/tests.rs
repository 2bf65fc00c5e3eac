//! The configuration's reading of each variable.

use super::*;

/// The configuration with the table named and one more variable set.
fn with_var(variable: &'static str, value: &'static str) -> Result<Config, ConfigError> {
    Config::from_lookup(move |name| match name {
        TABLE_NAME => Some("ledger".into()),
        other if other == variable => Some(value.into()),
        _ => None,
    })
}

fn refused(variable: &'static str, value: &'static str) -> bool {
    matches!(with_var(variable, value), Err(ConfigError(name, _)) if name == variable)
}

#[test]
fn member_accounts_need_the_hubs_own_id_and_are_twelve_digits() {
    let read = |home: Option<&'static str>, members: &'static str| {
        Config::from_lookup(move |name| match name {
            TABLE_NAME => Some("ledger".into()),
            MEMBER_ACCOUNTS => Some(members.into()),
            DEPLOYMENT_ACCOUNT_ID => home.map(Into::into),
            _ => None,
        })
    };
    let config = read(Some("111111111111"), "222222222222, 333333333333,111111111111").expect("valid");
    assert_eq!(config.accounts.home, AccountId::parse("111111111111"));
    assert_eq!(
        config
            .accounts
            .members
            .iter()
            .map(AccountId::as_str)
            .collect::<Vec<_>>(),
        ["222222222222", "333333333333"],
        "the hub is never its own member"
    );
    assert_eq!(config.member_role_name, DEFAULT_MEMBER_ROLE_NAME);
    assert!(matches!(
        read(None, "222222222222"),
        Err(ConfigError(DEPLOYMENT_ACCOUNT_ID, _))
    ));
    assert!(matches!(
        read(Some("111111111111"), "2222"),
        Err(ConfigError(MEMBER_ACCOUNTS, _))
    ));
    assert!(matches!(
        read(Some("1111"), ""),
        Err(ConfigError(DEPLOYMENT_ACCOUNT_ID, _))
    ));
    assert!(refused(MEMBER_ROLE_NAME, "no spaces allowed"));
    assert!(!read(None, "").expect("one account").accounts.spans_members());
    // A default target may be limited to one account.
    assert!(with_var(DEFAULT_TARGETS, r#"{"222222222222:vpc-0000000a": "eni-0000000b"}"#).is_ok());
    assert!(refused(DEFAULT_TARGETS, r#"{"2222:vpc-0000000a": "eni-0000000b"}"#));
}

#[test]
fn the_table_is_required_and_the_rest_defaults() {
    assert_eq!(
        Config::from_lookup(|_| None),
        Err(ConfigError(TABLE_NAME, "must name the ledger table".into()))
    );
    let config = Config::from_lookup(|name| (name == TABLE_NAME).then(|| "ledger".to_owned())).expect("ok");
    assert_eq!(config.event_source, "traffic-mirroring");
    assert_eq!(config.event_bus_name, "default");
    assert!(config.default_targets.is_empty());
    assert_eq!(config.claim_lease_seconds, 900);
    assert_eq!(config.max_concurrent_actions, 10);
    assert_eq!(config.owner, "table/ledger");
    assert_eq!(
        (config.allowed_targets, config.allowed_sources),
        (AllowList::Nothing, AllowList::Nothing),
        "closed by default"
    );
    assert_eq!((config.finished_record_days, config.sweep_max_deletions), (365, 5));
    assert!(!config.require_reason && !config.remove_unapproved_mirrors);
    assert_eq!(config.max_mirror_minutes, None);
    assert_eq!(Config::for_table("ledger").map(|c| c.owner), Ok("table/ledger".into()));
}

#[test]
fn concurrent_actions_are_bounded() {
    assert_eq!(
        with_var(MAX_CONCURRENT_ACTIONS, "4").map(|c| c.max_concurrent_actions),
        Ok(4)
    );
    for bad in ["0", "101", "many"] {
        assert!(refused(MAX_CONCURRENT_ACTIONS, bad), "{bad}");
    }
}

#[test]
fn the_mutating_rate_is_in_range_or_absent() {
    let with = |rate: &'static str| with_var(MUTATING_CALLS_PER_SECOND, rate);
    assert_eq!(with("1.5").map(|c| c.mutating_calls_per_second), Ok(Some(1.5)));
    assert_eq!(with("").map(|c| c.mutating_calls_per_second), Ok(None));
    // 1e-300 once made the pacer's wait overflow a Duration and panic.
    for bad in ["0", "-2", "NaN", "inf", "fast", "1e-300", "0.001", "5000"] {
        assert!(refused(MUTATING_CALLS_PER_SECOND, bad), "{bad}");
    }
}

#[test]
fn the_claim_lease_is_bounded_seconds() {
    assert_eq!(
        with_var(CLAIM_LEASE_SECONDS, "180").map(|c| c.claim_lease_seconds),
        Ok(180)
    );
    for bad in ["0", "-5", "soon", "99999999999999999999", "86401"] {
        assert!(refused(CLAIM_LEASE_SECONDS, bad), "{bad}");
    }
}

#[test]
fn default_targets_must_be_an_object_of_valid_targets() {
    let config = with_var(DEFAULT_TARGETS, r#"{"vpc-0000000a": "eni-0000000b"}"#).expect("valid");
    assert_eq!(
        config.default_targets.get("vpc-0000000a").map(String::as_str),
        Some("eni-0000000b")
    );
    for bad in [
        "[1]",
        r#"{"vpc-0000000a": "eni-nothex"}"#,
        r#"{"office": "eni-0000000b"}"#,
    ] {
        assert!(refused(DEFAULT_TARGETS, bad), "{bad}");
    }
}

#[test]
fn the_owner_is_a_tag_value_unique_to_the_deployment() {
    let stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/mirror/0a1b2c3d-1111-2222-3333-444455556666";
    assert_eq!(with_var(OWNER, stack).map(|c| c.owner), Ok(stack.to_owned()));
    assert!(refused(OWNER, "traffic-mirroring"), "the shared legacy value");
    assert!(refused(OWNER, "semi;colon"));
    assert!(refused(OWNER, Box::leak("x".repeat(257).into_boxed_str())));
    let two = |table: &'static str| {
        Config::from_lookup(move |name| (name == TABLE_NAME).then(|| table.to_owned())).map(|c| c.owner)
    };
    assert_ne!(two("staging"), two("production"));
}

#[test]
fn allow_lists_name_valid_targets_and_networks() {
    let nlb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mon/50dc6c495c0c9188";
    let listed = Box::leak(format!(" eni-0000000b , {nlb},vpce-0123456789abcdef0,tmt-0000000c ").into_boxed_str());
    let config = with_var(ALLOWED_TARGETS, listed).expect("valid");
    assert!(matches!(config.allowed_targets, AllowList::Only(set) if set.len() == 4));
    assert!(refused(ALLOWED_TARGETS, "eni-0000000b,10.0.0.1"));
    let sources = with_var(ALLOWED_SOURCES, "vpc-0000000a, subnet-0123456789abcdef0").expect("valid");
    assert!(matches!(sources.allowed_sources, AllowList::Only(set) if set.len() == 2));
    assert!(refused(ALLOWED_SOURCES, "vpc-0000000a,sg-0000000b"));
    assert_eq!(
        with_var(ALLOWED_TARGETS, " * ").map(|c| c.allowed_targets),
        Ok(AllowList::Any)
    );
    assert_eq!(
        with_var(ALLOWED_SOURCES, "*").map(|c| c.allowed_sources),
        Ok(AllowList::Any)
    );
    assert_eq!(
        with_var(ALLOWED_TARGETS, " , ").map(|c| c.allowed_targets),
        Ok(AllowList::Nothing)
    );
    assert!(
        refused(ALLOWED_TARGETS, "*,eni-0000000b"),
        "* beside items is a mistake"
    );
}

#[test]
fn reason_cap_and_unapproved_removal_are_read_by_name() {
    assert_eq!(with_var(REQUIRE_REASON, "TRUE").map(|c| c.require_reason), Ok(true));
    assert!(refused(REQUIRE_REASON, "yes"));
    assert_eq!(
        with_var(REMOVE_UNAPPROVED_MIRRORS, "true").map(|c| c.remove_unapproved_mirrors),
        Ok(true)
    );
    assert_eq!(
        with_var(MAX_MIRROR_MINUTES, "240").map(|c| c.max_mirror_minutes),
        Ok(Some(240))
    );
    for bad in ["0", "525601", "4h"] {
        assert!(refused(MAX_MIRROR_MINUTES, bad), "{bad}");
    }
}

#[test]
fn record_days_and_sweep_deletions_are_bounded() {
    assert_eq!(
        with_var(FINISHED_RECORD_DAYS, "7").map(|c| c.finished_record_days),
        Ok(7)
    );
    assert_eq!(with_var(SWEEP_MAX_DELETIONS, "0").map(|c| c.sweep_max_deletions), Ok(0));
    for bad in ["0", "3651", "-1", "a month"] {
        assert!(refused(FINISHED_RECORD_DAYS, bad), "{bad}");
    }
    for bad in ["1001", "-1", "lots"] {
        assert!(refused(SWEEP_MAX_DELETIONS, bad), "{bad}");
    }
}
