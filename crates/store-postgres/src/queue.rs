//! Writes a transaction queues instead of sending: the card update, the
//! audit entry, the outbox event and the OTP state, whose outcome nobody
//! waits for. They go to the server as one statement (data-modifying CTEs)
//! with the transaction's next read or just before its COMMIT, so a PIN
//! write is one round trip for its three writes instead of three.
//!
//! The sub-statements of one WITH run against the same snapshot and in no
//! set order, so a queue holds at most one statement per [`Kind`]: a second
//! update of a card (which would be an error or a lost write in one
//! statement) or a second event (whose `seq` must follow the order of the
//! calls) sends what is queued first.

use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Encode, Postgres, Type};

use cardcore_store::{StoreError, StoreResult};

/// What a queued statement writes; one of each per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Card,
    Audit,
    Event,
    Otp,
    Activation,
}

/// Statements waiting to be sent, with their bound values already encoded.
#[derive(Default)]
pub(crate) struct Queue {
    statements: Vec<(Kind, String)>,
    args: PgArguments,
    /// A value failed to encode part-way through a statement: the values
    /// no longer line up with the placeholders, so nothing may be sent.
    broken: bool,
}

impl Queue {
    pub(crate) fn is_empty(&self) -> bool {
        self.statements.is_empty() && !self.broken
    }

    /// Whether a statement of this kind must wait for the queue to be sent.
    pub(crate) fn holds(&self, kind: Kind) -> bool {
        self.statements.iter().any(|(k, _)| *k == kind)
    }

    /// Queues `sql`, written with placeholders `$1`..`$n`, and binds its
    /// values with `bind`, which receives a [`Binder`] in placeholder order.
    pub(crate) fn push(
        &mut self,
        kind: Kind,
        sql: &str,
        bind: impl FnOnce(&mut Binder<'_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        debug_assert!(!self.holds(kind), "one statement per kind");
        let offset = self.args.len();
        if let Err(e) = bind(&mut Binder(&mut self.args)) {
            self.broken = true;
            return Err(e);
        }
        self.statements.push((kind, shift_placeholders(sql, offset)));
        Ok(())
    }

    /// The queue as one statement and its values; empties the queue. Once a
    /// value could not be encoded it fails every time, so a transaction that
    /// went on after that error can never commit without the write it lost.
    pub(crate) fn take(&mut self) -> StoreResult<(String, PgArguments)> {
        if self.broken {
            return Err(StoreError::internal(
                "a queued write could not be encoded; the transaction cannot commit",
            ));
        }
        let Self { statements, args, .. } = std::mem::take(self);
        Ok((compose(statements.into_iter().map(|(_, sql)| sql).collect()), args))
    }
}

/// Binds one queued statement's values.
pub(crate) struct Binder<'a>(&'a mut PgArguments);

impl Binder<'_> {
    pub(crate) fn bind<'q, T>(&mut self, value: T) -> StoreResult<&mut Self>
    where
        T: 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        self.0
            .add(value)
            .map_err(|e| StoreError::caused("encoding a value", e))?;
        Ok(self)
    }
}

/// One statement: the last is the primary statement, the others come before
/// it as `WITH` items (PostgreSQL runs every data-modifying WITH item to
/// completion whether or not anything reads it).
fn compose(mut statements: Vec<String>) -> String {
    let Some(last) = statements.pop() else {
        return String::new();
    };
    if statements.is_empty() {
        return last;
    }
    let items: Vec<String> = statements
        .iter()
        .enumerate()
        .map(|(i, s)| format!("w{i} AS ({s})"))
        .collect();
    format!("WITH {} {last}", items.join(", "))
}

/// `sql` with every `$n` placeholder renumbered to `$(n + offset)`. The
/// statements given here hold no `$` other than placeholders.
fn shift_placeholders(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_shifted_past_the_values_already_bound() {
        assert_eq!(
            shift_placeholders("UPDATE t SET a = $1 WHERE id = $2", 0),
            "UPDATE t SET a = $1 WHERE id = $2"
        );
        assert_eq!(
            shift_placeholders("INSERT INTO t VALUES ($1, $2, $10)", 16),
            "INSERT INTO t VALUES ($17, $18, $26)"
        );
        assert_eq!(shift_placeholders("SELECT $1::text", 3), "SELECT $4::text");
    }

    #[test]
    fn one_statement_goes_alone_and_several_become_with_items() {
        assert_eq!(compose(vec![]), "");
        assert_eq!(compose(vec!["UPDATE a SET x = $1".into()]), "UPDATE a SET x = $1");
        assert_eq!(
            compose(vec![
                "UPDATE a SET x = $1".into(),
                "INSERT INTO b VALUES ($2)".into(),
                "INSERT INTO c VALUES ($3)".into()
            ]),
            "WITH w0 AS (UPDATE a SET x = $1), w1 AS (INSERT INTO b VALUES ($2)) INSERT INTO c VALUES ($3)"
        );
    }

    #[test]
    fn values_are_numbered_across_statements() {
        let mut q = Queue::default();
        q.push(Kind::Card, "UPDATE cards SET a = $1 WHERE id = $2", |b| {
            b.bind(1_i64)?.bind("x")?;
            Ok(())
        })
        .unwrap();
        assert!(q.holds(Kind::Card) && !q.holds(Kind::Audit));
        q.push(Kind::Audit, "INSERT INTO audit_log (a) VALUES ($1)", |b| {
            b.bind(2_i64)?;
            Ok(())
        })
        .unwrap();
        let (sql, args) = q.take().unwrap();
        assert_eq!(
            sql,
            "WITH w0 AS (UPDATE cards SET a = $1 WHERE id = $2) INSERT INTO audit_log (a) VALUES ($3)"
        );
        assert_eq!(args.len(), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn a_value_that_fails_to_encode_breaks_the_queue_for_good() {
        let mut q = Queue::default();
        q.push(Kind::Card, "UPDATE cards SET a = $1", |b| {
            b.bind(1_i64)?;
            Ok(())
        })
        .unwrap();
        let failed = q.push(Kind::Audit, "INSERT INTO audit_log (a, b) VALUES ($1, $2)", |b| {
            b.bind(2_i64)?;
            Err(StoreError::internal("no"))
        });
        assert!(failed.is_err());
        assert!(!q.is_empty(), "a broken queue still has to be reported");
        assert!(q.take().is_err());
        assert!(q.take().is_err(), "and stays broken");
    }
}
