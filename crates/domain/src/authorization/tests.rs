use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::card::{Brand, CardType, KitNumber, PinStatus};
use crate::ids::{AccountId, CardId, CardholderId, ProgramId, TenantId};
use crate::reason::StatusReason;

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> Timestamp {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn card(status: CardStatus, reason: Option<&str>) -> Card {
    let now = utc(2026, 1, 15, 12, 0);
    let mut limits = Limits::unlimited("EUR");
    limits.channels.pos.daily = Some(10_000);
    limits.channels.pos.monthly = Some(50_000);
    limits.channels.pos.per_transaction = Some(5_000);
    limits.channels.pos.daily_count = Some(3);
    limits.channels.atm.enabled = false;
    Card {
        id: CardId::new(),
        tenant_id: TenantId::new(),
        cardholder_id: CardholderId::new(),
        account_id: AccountId::new(),
        program_id: ProgramId::new(),
        card_type: CardType::Virtual,
        status,
        status_reason: reason.map(|r| StatusReason {
            code: ReasonCode::parse(r, &[]).unwrap(),
            message: None,
        }),
        pin_status: PinStatus::Set,
        brand: Brand::Visa,
        last_four: "4242".into(),
        expiry: Expiry::new(12, 2028).unwrap(),
        card_name: None,
        printed_name: None,
        kit_number: KitNumber::parse("1234567890").unwrap(),
        replacement_for: None,
        limits,
        created_at: now,
        updated_at: now,
    }
}

fn merchant(mcc: &str, country: &str) -> Merchant {
    Merchant {
        mcc: mcc.into(),
        name: None,
        city: None,
        country: country.into(),
        id: None,
    }
}

fn payment(m: &Merchant, amount: u64) -> Payment<'_> {
    Payment {
        billing_amount: amount,
        channel: PaymentChannel::Pos,
        merchant: m,
        expiry: None,
        cvv2_matches: None,
        pin_right: None,
    }
}

#[test]
fn every_reason_has_its_contract_code() {
    let table = [
        ("CARD_NOT_FOUND", "14"),
        ("CARD_EXPIRED", "54"),
        ("CARD_INACTIVE", "78"),
        ("CARD_LOCKED", "62"),
        ("CARD_LOST", "41"),
        ("CARD_STOLEN", "43"),
        ("CARD_FRAUD", "59"),
        ("CARD_BLOCKED", "62"),
        ("CARD_CLOSED", "62"),
        ("CVV2_MISMATCH", "N7"),
        ("PIN_TRIES_EXCEEDED", "75"),
        ("PIN_INCORRECT", "55"),
        ("PIN_NOT_SET", "55"),
        ("CHANNEL_DISABLED", "57"),
        ("MCC_NOT_ALLOWED", "57"),
        ("COUNTRY_NOT_ALLOWED", "57"),
        ("LIMIT_PER_TRANSACTION", "61"),
        ("LIMIT_DAILY", "61"),
        ("LIMIT_MONTHLY", "61"),
        ("LIMIT_DAILY_COUNT", "65"),
        ("DECLINED_BY_TENANT", "05"),
        ("TENANT_UNAVAILABLE", "91"),
    ];
    assert_eq!(table.len(), DeclineReason::ALL.len());
    for (name, code) in table {
        let r = DeclineReason::parse(name).unwrap();
        assert_eq!(r.response_code(), code, "{name}");
        assert_eq!(serde_json::to_value(r).unwrap(), name);
    }
}

#[test]
fn checks_run_in_the_contract_order() {
    let now = utc(2026, 1, 15, 12, 0);
    let w = Windows::at(now, Tz::UTC);
    let none = SpendingControls::default();
    let totals = SpendTotals::default();
    let m = merchant("5411", "PT");
    let state = |c: &'static Card| CardState {
        card: c,
        tries: PinTries::new(PinStatus::Set, 0),
        controls: &none,
        totals: &totals,
    };
    let leak = |c: Card| -> &'static Card { Box::leak(Box::new(c)) };
    // A locked card with a wrong CVV2: the status comes first.
    let locked = leak(card(CardStatus::Locked, None));
    let mut p = payment(&m, 100);
    p.cvv2_matches = Some(false);
    p.pin_right = Some(false);
    let d = decide(&state(locked), &p, &w, now, 3);
    assert_eq!(d.declined, Some(DeclineReason::CardLocked));
    assert_eq!(d.tries.failures, 0, "no PIN counted on a refused card");
    // A wrong expiry beats the status.
    p.expiry = Expiry::new(1, 2027);
    assert_eq!(
        decide(&state(locked), &p, &w, now, 3).declined,
        Some(DeclineReason::CardExpired)
    );
    // Blocked reasons.
    for (reason, want) in [
        ("LOST_CARD", DeclineReason::CardLost),
        ("STOLEN_CARD", DeclineReason::CardStolen),
        ("FRAUD_CONFIRMED", DeclineReason::CardFraud),
        ("DAMAGED_CARD", DeclineReason::CardBlocked),
    ] {
        let c = leak(card(CardStatus::Blocked, Some(reason)));
        assert_eq!(decide(&state(c), &payment(&m, 1), &w, now, 3).declined, Some(want));
    }
    // CVV2 before the PIN: a wrong CVV2 counts no PIN try.
    let active = leak(card(CardStatus::Active, None));
    let mut p = payment(&m, 100);
    p.cvv2_matches = Some(false);
    p.pin_right = Some(false);
    let d = decide(&state(active), &p, &w, now, 3);
    assert_eq!(d.declined, Some(DeclineReason::Cvv2Mismatch));
    assert_eq!(d.tries.failures, 0);
    // A wrong PIN counts; the third blocks and answers 75.
    p.cvv2_matches = Some(true);
    let mut s = state(active);
    for want in [
        DeclineReason::PinIncorrect,
        DeclineReason::PinIncorrect,
        DeclineReason::PinTriesExceeded,
    ] {
        let d = decide(&s, &p, &w, now, 3);
        assert_eq!(d.declined, Some(want));
        s.tries = d.tries;
    }
    assert_eq!(s.tries.status, PinStatus::Blocked);
    p.pin_right = Some(true);
    assert_eq!(
        decide(&s, &p, &w, now, 3).declined,
        Some(DeclineReason::PinTriesExceeded)
    );
    s.tries = PinTries::NOT_SET;
    assert_eq!(decide(&s, &p, &w, now, 3).declined, Some(DeclineReason::PinNotSet));
    // The PIN before limits: a right PIN over the limit still clears failures.
    s.tries = PinTries::new(PinStatus::Set, 2);
    let over = Payment {
        billing_amount: 6_000,
        ..p.clone()
    };
    let d = decide(&s, &over, &w, now, 3);
    assert_eq!(d.declined, Some(DeclineReason::LimitPerTransaction));
    assert_eq!(d.tries.failures, 0);
    // Channel, then controls, then amounts.
    let atm = Payment {
        channel: PaymentChannel::Atm,
        ..payment(&m, 1)
    };
    assert_eq!(
        decide(&state(active), &atm, &w, now, 3).declined,
        Some(DeclineReason::ChannelDisabled)
    );
    let blocked_mcc = SpendingControls {
        blocked_mccs: vec!["5411".into()],
        allowed_countries: Some(vec!["ES".into()]),
        ..SpendingControls::default()
    };
    let mut s = state(active);
    s.controls = &blocked_mcc;
    assert_eq!(
        decide(&s, &payment(&m, 1), &w, now, 3).declined,
        Some(DeclineReason::MccNotAllowed)
    );
    let other = merchant("5812", "PT");
    assert_eq!(
        decide(&s, &payment(&other, 1), &w, now, 3).declined,
        Some(DeclineReason::CountryNotAllowed)
    );
}

#[test]
fn daily_monthly_and_count_limits() {
    let now = utc(2026, 1, 15, 12, 0);
    let w = Windows::at(now, Tz::UTC);
    let none = SpendingControls::default();
    let c = card(CardStatus::Active, None);
    let m = merchant("5411", "PT");
    let mut totals = SpendTotals::default();
    let mut approved = 0;
    for _ in 0..5 {
        let s = CardState {
            card: &c,
            tries: PinTries::NOT_SET,
            controls: &none,
            totals: &totals,
        };
        let d = decide(&s, &payment(&m, 3_000), &w, now, 3);
        if d.approved() {
            approved += 1;
            totals.add(PaymentChannel::Pos, &w, 3_000);
        } else {
            assert_eq!(d.declined, Some(DeclineReason::LimitDaily));
        }
    }
    assert_eq!(approved, 3);
    // The count: three small ones use the daily count of 3.
    let mut totals = SpendTotals::default();
    for _ in 0..3 {
        totals.add(PaymentChannel::Pos, &w, 1);
    }
    let s = CardState {
        card: &c,
        tries: PinTries::NOT_SET,
        controls: &none,
        totals: &totals,
    };
    assert_eq!(
        decide(&s, &payment(&m, 1), &w, now, 3).declined,
        Some(DeclineReason::LimitDailyCount)
    );
    // Moto counts on ecommerce.
    let mut t = SpendTotals::default();
    t.add(PaymentChannel::Moto, &w, 7);
    assert_eq!(t.usage(PaymentChannel::Ecommerce, &w).day_amount, 7);
}

#[test]
fn windows_follow_the_time_zone() {
    let lisbon: Tz = parse_time_zone("Europe/Lisbon").unwrap();
    let sp: Tz = parse_time_zone("America/Sao_Paulo").unwrap();
    // 23:30 UTC on Jan 31 is Feb 1 in Tokyo, still Jan 31 in Lisbon (UTC+0 in winter), Jan 31 in São Paulo.
    let t = utc(2026, 1, 31, 23, 30);
    assert_eq!(Windows::at(t, lisbon).day, "2026-01-31");
    assert_eq!(Windows::at(t, parse_time_zone("Asia/Tokyo").unwrap()).month, "2026-02");
    // 23:30 UTC in July is 00:30 of the next day in Lisbon (summer time).
    assert_eq!(Windows::at(utc(2026, 7, 31, 23, 30), lisbon).month, "2026-08");
    // 01:00 UTC on Mar 1 is still February in São Paulo (UTC-3).
    assert_eq!(Windows::at(utc(2026, 3, 1, 1, 0), sp).month, "2026-02");
    assert!(parse_time_zone("Mars/Olympus").is_none());
}

#[test]
fn movements_keep_the_amounts_adding_up() {
    let a = Amounts {
        approved: 1_000,
        pending: 1_000,
        captured: 0,
        reversed: 0,
    };
    let st = AuthorizationStatus::Approved;
    let m = capture(st, a, 400).unwrap();
    assert_eq!(m.status, AuthorizationStatus::Approved);
    assert_eq!(
        capture(m.status, m.amounts, 700),
        Err(MovementRefused::AboveOpen {
            amount: 700,
            pending: 600
        })
    );
    let r = reverse(m.status, m.amounts, None).unwrap();
    assert_eq!(r.status, AuthorizationStatus::Closed);
    assert_eq!(r.released, 600);
    assert!(!r.uncount, "a captured payment keeps its count");
    assert_eq!(
        r.amounts,
        Amounts {
            approved: 1_000,
            pending: 0,
            captured: 400,
            reversed: 600
        }
    );
    assert_eq!(reverse(r.status, r.amounts, None), Err(MovementRefused::Closed));
    assert_eq!(
        capture(AuthorizationStatus::Declined, a, 1),
        Err(MovementRefused::Declined)
    );
    let due = utc(2026, 1, 8, 0, 0);
    let e = expire(st, a, Some(due), due).unwrap();
    assert_eq!(
        (e.status, e.released, e.uncount),
        (AuthorizationStatus::Expired, 1_000, true)
    );
    assert_eq!(expire(e.status, e.amounts, Some(due), due), None, "exactly once");
    assert_eq!(expire(st, a, Some(due), due - Duration::seconds(1)), None, "not before");
    assert_eq!(reverse(e.status, e.amounts, Some(1)), Err(MovementRefused::Expired));
}

#[test]
fn controls_validate_their_codes() {
    let c = SpendingControls {
        allowed_mccs: Some(vec!["541".into()]),
        blocked_mccs: vec![],
        allowed_countries: None,
        blocked_countries: vec!["pt".into()],
    };
    let e = c.validate().unwrap_err();
    let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["allowed_mccs[0]", "blocked_countries[0]"]);
}

/// Instants across several years, minute precision.
fn instant() -> impl Strategy<Value = Timestamp> {
    (1_700_000_000i64..1_900_000_000).prop_map(|s| Utc.timestamp_opt(s - s % 60, 0).unwrap())
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        "UTC",
        "Europe/Lisbon",
        "America/Sao_Paulo",
        "Asia/Kolkata",
        "Pacific/Auckland",
        "America/Los_Angeles",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
    ])
    .prop_map(|n| parse_time_zone(n).unwrap())
}

/// What can happen to a card's money, in some order.
#[derive(Debug, Clone)]
enum Op {
    /// An authorization of this amount, this many minutes after the last op.
    Authorize { amount: u64, later: i64 },
    /// A capture of a share (per mille) of the pending amount of the i-th authorization.
    Capture { which: usize, share: u64 },
    /// A reversal of a share (per mille; 1000: all) of the i-th authorization.
    Reverse { which: usize, share: u64 },
    /// The expiry task runs, this many hours later.
    Expire { later_hours: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u64..4_000, 0i64..2_000).prop_map(|(amount, later)| Op::Authorize { amount, later }),
        2 => (0usize..20, 1u64..=1000).prop_map(|(which, share)| Op::Capture { which, share }),
        2 => (0usize..20, 1u64..=1000).prop_map(|(which, share)| Op::Reverse { which, share }),
        1 => (0i64..100).prop_map(|later_hours| Op::Expire { later_hours }),
    ]
}

struct Auth {
    status: AuthorizationStatus,
    amounts: Amounts,
    windows: Windows,
    created: Timestamp,
    expires_at: Timestamp,
}

proptest! {
    /// The day and month keys are the local calendar's: the local date of
    /// the instant, whatever the zone's offset or daylight saving, and the
    /// day key always lies inside the month key. Days of one month share
    /// its key; the first instant of the next local month has the next key.
    #[test]
    fn windows_are_local_calendar_days_and_months(t in instant(), tz in zone()) {
        let w = Windows::at(t, tz);
        let local = t.with_timezone(&tz);
        prop_assert_eq!(&w.day, &local.format("%Y-%m-%d").to_string());
        prop_assert!(w.day.starts_with(&w.month));
        // A minute later is the same window or the next one, never an earlier one.
        let next = Windows::at(t + Duration::minutes(1), tz);
        prop_assert!(next.day >= w.day && next.month >= w.month);
        // Month ends: the last local day of a month (28, 29, 30 or 31) and the next day differ in month.
        let d = local.date_naive();
        let tomorrow = d.succ_opt().unwrap();
        if tomorrow.month() != d.month() {
            let later = Windows::at(t + Duration::hours(24), tz);
            prop_assert_ne!(later.month, w.month);
        }
    }

    /// Any history of authorizations, captures, reversals and expiries in
    /// any zone: the running totals equal what a full recount of the current
    /// windows gives (approved amounts less what was released, counts less
    /// the authorizations released in full with nothing captured), every
    /// authorization's amounts add up, and no approval ever took a window
    /// past its limit.
    #[test]
    fn running_totals_equal_a_recount(tz in zone(), start in instant(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut c = card(CardStatus::Active, None);
        c.expiry = Expiry::new(12, 2099).unwrap();
        c.limits.channels.pos.per_transaction = None;
        c.limits.channels.pos.daily_count = Some(5);
        let none = SpendingControls::default();
        let m = merchant("5411", "PT");
        let mut totals = SpendTotals::default();
        let mut auths: Vec<Auth> = Vec::new();
        let mut now = start;
        for op in ops {
            match op {
                Op::Authorize { amount, later } => {
                    now += Duration::minutes(later);
                    let w = Windows::at(now, tz);
                    let s = CardState { card: &c, tries: PinTries::NOT_SET, controls: &none, totals: &totals };
                    let d = decide(&s, &payment(&m, amount), &w, now, 3);
                    if d.approved() {
                        totals.add(PaymentChannel::Pos, &w, amount);
                        let u = totals.usage(PaymentChannel::Pos, &w);
                        prop_assert!(u.day_amount <= 10_000 && u.month_amount <= 50_000 && u.day_count <= 5);
                        auths.push(Auth {
                            status: AuthorizationStatus::Approved,
                            amounts: Amounts { approved: amount, pending: amount, captured: 0, reversed: 0 },
                            windows: w,
                            created: now,
                            expires_at: now + Duration::days(7),
                        });
                    }
                }
                Op::Capture { which, share } => {
                    if let Some(a) = auths.get_mut(which) {
                        let amount = (a.amounts.pending * share / 1000).max(1);
                        if let Ok(mv) = capture(a.status, a.amounts, amount) {
                            a.status = mv.status;
                            a.amounts = mv.amounts;
                        }
                    }
                }
                Op::Reverse { which, share } => {
                    if let Some(a) = auths.get_mut(which) {
                        let amount = (share < 1000).then(|| (a.amounts.pending * share / 1000).max(1));
                        if let Ok(mv) = reverse(a.status, a.amounts, amount) {
                            totals.release(PaymentChannel::Pos, &a.windows, mv.released, mv.uncount);
                            a.status = mv.status;
                            a.amounts = mv.amounts;
                        }
                    }
                }
                Op::Expire { later_hours } => {
                    now += Duration::hours(later_hours);
                    for a in &mut auths {
                        if let Some(mv) = expire(a.status, a.amounts, Some(a.expires_at), now) {
                            totals.release(PaymentChannel::Pos, &a.windows, mv.released, mv.uncount);
                            a.status = mv.status;
                            a.amounts = mv.amounts;
                        }
                        prop_assert!(expire(a.status, a.amounts, Some(a.expires_at), now).is_none());
                    }
                }
            }
            for a in &auths {
                let x = a.amounts;
                prop_assert_eq!(x.approved, x.pending + x.captured + x.reversed);
                prop_assert!(a.created <= now);
            }
            // Recount the windows of `now`.
            let w = Windows::at(now, tz);
            let in_day: Vec<&Auth> = auths.iter().filter(|a| a.windows.day == w.day).collect();
            let in_month: Vec<&Auth> = auths.iter().filter(|a| a.windows.month == w.month).collect();
            let net = |a: &&Auth| a.amounts.pending + a.amounts.captured;
            let counted = |a: &&Auth| !matches!(a.status, AuthorizationStatus::Reversed | AuthorizationStatus::Expired);
            let u = totals.usage(PaymentChannel::Pos, &w);
            prop_assert_eq!(u.day_amount, in_day.iter().map(net).sum::<u64>());
            prop_assert_eq!(u.month_amount, in_month.iter().map(net).sum::<u64>());
            prop_assert_eq!(u.day_count as usize, in_day.iter().filter(|a| counted(a)).count());
            prop_assert_eq!(u.month_count as usize, in_month.iter().filter(|a| counted(a)).count());
        }
    }
}
