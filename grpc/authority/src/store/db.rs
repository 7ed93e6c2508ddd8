//! One way to speak SQL to either backend: [`Db`] is a connection to SQLite or PostgreSQL,
//! shaped like the subset of rusqlite the ledger uses (cached statements, `query_row`,
//! `query_map`, `params!`, `optional()`), so the ledger is written once for both.
//!
//! SQL is written in the dialect both accept: numbered parameters `?1`, `?2`... (rewritten
//! to `$1`, `$2`... for PostgreSQL), `ON CONFLICT`, `RETURNING`, and `instr` and the scalar
//! `max(a, b)` and `min(a, b)`, which the PostgreSQL schema defines. Lists (of integers,
//! text or bytes) bind on PostgreSQL only, as arrays for `= ANY(?1)` and `unnest(...)`:
//! there each statement is a round trip, so set-wise work is written for it apart. Values are integers, text, bytes or NULL: every integer column
//! is a 64-bit integer on both, and sums come back as integers. No crate does this: sqlx
//! abstracts over both but is async throughout, and the ledger runs as plain functions
//! inside the store's savepoints.

use std::cell::RefCell;
use std::collections::HashMap;

use super::postgres::PgConn;

/// A `Result` whose error is [`DbError`].
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// What can go wrong talking to the database, in the kinds the authority treats apart.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `query_row` found no row (see [`OptionalExtension::optional`]).
    #[error("the query returned no row")]
    NoRows,
    /// A unique, foreign-key, check or not-null constraint refused the write.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// Another transaction was in the way (deadlock, serialization failure, busy): the
    /// same work may succeed when run again.
    #[error("conflict with a concurrent transaction: {0}")]
    Conflict(String),
    /// The database cannot be reached (down, restarting, failing over).
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// A value no backend can hold as given (text with a NUL character, which PostgreSQL
    /// refuses): the caller's input, refused alike on both backends.
    #[error("{0}")]
    Invalid(String),
    /// Anything else: a bad statement, a value of the wrong type...
    #[error("{0}")]
    Other(String),
}

/// A value bound to a parameter or read from a column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also booleans, as 0 or 1).
    Int(i64),
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
    /// A list of integers (PostgreSQL only: `bigint[]`).
    Ints(&'a [i64]),
    /// A list of text (PostgreSQL only: `text[]`).
    Texts(&'a [&'a str]),
    /// A list of bytes (PostgreSQL only: `bytea[]`).
    Blobs(&'a [&'a [u8]]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
            Value::Ints(_) => "a list of integers",
            Value::Texts(_) => "a list of text",
            Value::Blobs(_) => "a list of bytes",
        }
    }
}

/// What a column of [`Db::copy_in`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer.
    Int,
    /// Text.
    Text,
    /// Bytes.
    Blob,
}

impl Kind {
    fn postgres_type(self) -> tokio_postgres::types::Type {
        use tokio_postgres::types::Type;
        match self {
            Kind::Int => Type::INT8,
            Kind::Text => Type::TEXT,
            Kind::Blob => Type::BYTEA,
        }
    }
}

/// A Rust value that binds to a parameter.
pub trait ToParam {
    /// Its SQL value.
    fn to_param(&self) -> Result<Value<'_>>;
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Result<Value<'_>> {
        (**self).to_param()
    }
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Result<Value<'_>> {
                i64::try_from(*self)
                    .map(Value::Int)
                    .map_err(|_| DbError::Other(format!("{} does not fit a 64-bit integer", self)))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, usize, u8);

impl ToParam for bool {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Int(i64::from(*self)))
    }
}

impl ToParam for str {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl ToParam for String {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl ToParam for [u8] {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl ToParam for Vec<u8> {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl<const N: usize> ToParam for [u8; N] {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl ToParam for [i64] {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Ints(self))
    }
}

impl ToParam for Vec<i64> {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Ints(self))
    }
}

impl ToParam for Vec<&str> {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Texts(self))
    }
}

impl ToParam for Vec<&[u8]> {
    fn to_param(&self) -> Result<Value<'_>> {
        Ok(Value::Blobs(self))
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Result<Value<'_>> {
        match self {
            Some(v) => v.to_param(),
            None => Ok(Value::Null),
        }
    }
}

/// The parameters of one statement: `params![a, b]`, an array of one type, or `[]`.
pub trait Params {
    /// Their values, in order.
    fn values(&self) -> Result<Vec<Value<'_>>>;
}

/// The values of `params`, refusing text with a NUL character on both backends.
fn values_of<P: Params>(params: &P) -> Result<Vec<Value<'_>>> {
    let values = params.values()?;
    refuse_nul(&values)?;
    Ok(values)
}

/// Refuses text with a NUL character (PostgreSQL cannot hold it), on both backends alike.
fn refuse_nul(values: &[Value<'_>]) -> Result<()> {
    let nul = |t: &str| t.contains('\0');
    if values.iter().any(|v| match v {
        Value::Text(t) => nul(t),
        Value::Texts(list) => list.iter().any(|t| nul(t)),
        _ => false,
    }) {
        return Err(DbError::Invalid(
            "text with a NUL character is refused".into(),
        ));
    }
    Ok(())
}

impl Params for &[&dyn ToParam] {
    fn values(&self) -> Result<Vec<Value<'_>>> {
        self.iter().map(|p| p.to_param()).collect()
    }
}

impl Params for [&dyn ToParam; 0] {
    fn values(&self) -> Result<Vec<Value<'_>>> {
        Ok(Vec::new())
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToParam> Params for [T; $n] {
            fn values(&self) -> Result<Vec<Value<'_>>> {
                self.iter().map(ToParam::to_param).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// Parameters of different types, as rusqlite's `params!`.
#[macro_export]
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::ToParam),*] as &[&dyn $crate::store::ToParam]
    };
}
pub use crate::params;

/// A Rust value read from a column.
pub trait FromColumn: Sized {
    /// Converts the column's value.
    fn from_column(value: Value<'_>) -> Result<Self>;
}

fn wrong_type<T>(value: Value<'_>, want: &str) -> Result<T> {
    Err(DbError::Other(format!(
        "a column holds {} where {want} was expected",
        value.kind()
    )))
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_column(value: Value<'_>) -> Result<Self> {
                match value {
                    Value::Int(v) => <$t>::try_from(v).map_err(|_| {
                        DbError::Other(format!("{v} is out of range for {}", stringify!($t)))
                    }),
                    v => wrong_type(v, "an integer"),
                }
            }
        }
    )*};
}
int_column!(i64, i32, u32, u64, u8);

impl FromColumn for bool {
    fn from_column(value: Value<'_>) -> Result<Self> {
        match value {
            Value::Int(v) => Ok(v != 0),
            v => wrong_type(v, "a boolean"),
        }
    }
}

impl FromColumn for String {
    fn from_column(value: Value<'_>) -> Result<Self> {
        match value {
            Value::Text(s) => Ok(s.to_owned()),
            v => wrong_type(v, "text"),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(value: Value<'_>) -> Result<Self> {
        match value {
            Value::Blob(b) => Ok(b.to_vec()),
            v => wrong_type(v, "bytes"),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_column(value: Value<'_>) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            v => T::from_column(v).map(Some),
        }
    }
}

/// A column's position; the ledger names columns by position only.
pub trait ColumnIndex {
    /// The position, from 0.
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result.
pub struct Row<'a>(RowOf<'a>);

enum RowOf<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// The value of column `index` as `T`.
    pub fn get<I: ColumnIndex, T: FromColumn>(&self, index: I) -> Result<T> {
        let index = index.index();
        match &self.0 {
            RowOf::Sqlite(row) => {
                use rusqlite::types::ValueRef;
                let value = match row.get_ref(index).map_err(from_sqlite)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(
                        std::str::from_utf8(t)
                            .map_err(|_| DbError::Other("a text column is not UTF-8".into()))?,
                    ),
                    ValueRef::Blob(b) => Value::Blob(b),
                    ValueRef::Real(_) => {
                        return Err(DbError::Other("a column holds a real number".into()));
                    }
                };
                T::from_column(value)
            }
            RowOf::Postgres(row) => T::from_column(super::postgres::column(row, index)?),
        }
    }
}

/// `optional()` on a `query_row` result: no row is `None`, as in rusqlite.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`DbError::NoRows`].
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A connection to the authority's database.
pub struct Db(Backend);

pub(super) enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

impl Db {
    pub(super) fn new(backend: Backend) -> Self {
        Self(backend)
    }

    pub(super) fn backend_mut(&mut self) -> &mut Backend {
        &mut self.0
    }

    /// Whether this is PostgreSQL (where several authority processes may share the data).
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Backend::Postgres(_))
    }

    /// A statement, prepared once per connection and reused.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement(match &self.0 {
            Backend::Sqlite(conn) => {
                StatementOf::Sqlite(conn.prepare_cached(sql).map_err(from_sqlite)?)
            }
            Backend::Postgres(conn) => StatementOf::Postgres(conn.as_ref(), conn.prepare(sql)?),
        }))
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// The first row of a query, through `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// PostgreSQL only: writes `rows` into `table` (`name (column, ...)`, whose columns are
    /// of `kinds`) by `COPY ... FROM STDIN BINARY`, which stores many rows for much less
    /// than an `INSERT` of each; the number of rows written.
    pub fn copy_in(&self, table: &str, kinds: &[Kind], rows: &[Vec<Value<'_>>]) -> Result<u64> {
        match &self.0 {
            Backend::Sqlite(_) => Err(DbError::Other("COPY is PostgreSQL's".into())),
            Backend::Postgres(conn) => {
                for row in rows {
                    refuse_nul(row)?;
                }
                let types: Vec<_> = kinds.iter().map(|k| k.postgres_type()).collect();
                conn.copy_in(&format!("COPY {table} FROM STDIN BINARY"), &types, rows)
            }
        }
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(conn) => conn.execute_batch(sql).map_err(from_sqlite),
            Backend::Postgres(conn) => conn.batch(sql),
        }
    }
}

/// A prepared statement.
pub struct Statement<'c>(StatementOf<'c>);

enum StatementOf<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres(&'c PgConn, tokio_postgres::Statement),
}

impl Statement<'_> {
    /// Runs it; the number of rows it changed.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = values_of(&params)?;
        match &mut self.0 {
            StatementOf::Sqlite(s) => s
                .execute(rusqlite::params_from_iter(values.iter().map(SqliteValue)))
                .map_err(from_sqlite),
            StatementOf::Postgres(conn, s) => conn.execute(s, &values),
        }
    }

    /// The first row, through `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = values_of(&params)?;
        match &mut self.0 {
            StatementOf::Sqlite(s) => {
                let mut rows = s
                    .query(rusqlite::params_from_iter(values.iter().map(SqliteValue)))
                    .map_err(from_sqlite)?;
                match rows.next().map_err(from_sqlite)? {
                    Some(row) => f(&Row(RowOf::Sqlite(row))),
                    None => Err(DbError::NoRows),
                }
            }
            StatementOf::Postgres(conn, s) => match conn.query(s, &values)?.first() {
                Some(row) => f(&Row(RowOf::Postgres(row))),
                None => Err(DbError::NoRows),
            },
        }
    }

    /// Every row, each through `f`.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = values_of(&params)?;
        let mapped: Vec<Result<T>> = match &mut self.0 {
            StatementOf::Sqlite(s) => {
                let mut rows = s
                    .query(rusqlite::params_from_iter(values.iter().map(SqliteValue)))
                    .map_err(from_sqlite)?;
                let mut mapped = Vec::new();
                while let Some(row) = rows.next().map_err(from_sqlite)? {
                    mapped.push(f(&Row(RowOf::Sqlite(row))));
                }
                mapped
            }
            StatementOf::Postgres(conn, s) => conn
                .query(s, &values)?
                .iter()
                .map(|row| f(&Row(RowOf::Postgres(row))))
                .collect(),
        };
        Ok(mapped.into_iter())
    }

    /// Whether the query returns any row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        match self.query_row(params, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(DbError::NoRows) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

struct SqliteValue<'a>(&'a Value<'a>);

impl rusqlite::ToSql for SqliteValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(v),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
            Value::Ints(_) | Value::Texts(_) | Value::Blobs(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "lists bind on PostgreSQL only".into(),
                ));
            }
        }))
    }
}

pub(super) fn from_sqlite(e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode;
    match e {
        rusqlite::Error::QueryReturnedNoRows => DbError::NoRows,
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            DbError::Constraint(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            DbError::Conflict(e.to_string())
        }
        e => DbError::Other(e.to_string()),
    }
}

/// Prepared statements of one PostgreSQL connection, by their SQL as written.
pub(super) type StatementCache = RefCell<HashMap<String, tokio_postgres::Statement>>;
