//! Folds event-sourcing commands into per-entity snapshot updates.
//!
//! Input: one command per record, a JSON object of string fields, such as a
//! Redis stream entry read without `value_field`:
//! `{"user_id":"1","command":"register","name":"Duffy","surename":"Duck"}`.
//!
//! Output: one record keyed by the entity id (`entity_field`) whose value is
//! the snapshot update, a JSON object of fields to set, with `null` for
//! fields to delete. A `redis_hash` sink with `key = "user_snapshot_{key}"`
//! applies it with HSET/HDEL, so the hash is always the fold of every
//! command seen so far. Per command:
//!
//! - every field except the entity and command fields is copied;
//! - `set` adds constant fields (`register = { set = { status = "active" } }`);
//! - `member`/`prefix` turn a field into a set member: `add_friend = {
//!   member = "friend_id", prefix = "friend:" }` sets `friend:2 = "1"`, and
//!   with `remove = true` deletes it;
//! - `delete = true` deletes the whole snapshot (a null value).
//!
//! Records without the entity field fail with a record error (and go to the
//! stage's `on_error` policy).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_sdk::{Error, InitError, Output, Record, Transform};

/// `[plugins.NAME.config]` of `snapshot`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The field that names the entity (the output key).
    #[serde(default = "default_entity_field")]
    pub entity_field: String,
    /// The field that names the command.
    #[serde(default = "default_command_field")]
    pub command_field: String,
    /// Rules per command name.
    #[serde(default)]
    pub commands: BTreeMap<String, Rule>,
}

/// What one command does besides copying its fields.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Constant fields to set.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// A field whose value becomes a set member `prefix + value`.
    pub member: Option<String>,
    /// The member's field name prefix.
    #[serde(default)]
    pub prefix: String,
    /// Remove the member instead of adding it.
    #[serde(default)]
    pub remove: bool,
    /// Delete the whole snapshot.
    #[serde(default)]
    pub delete: bool,
}

fn default_entity_field() -> String {
    "user_id".into()
}

fn default_command_field() -> String {
    "command".into()
}

/// The transform; see the crate docs.
pub struct Snapshot(Config);

impl Transform for Snapshot {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        for (name, rule) in &config.commands {
            if rule.member.is_none() && (rule.remove || !rule.prefix.is_empty()) {
                return Err(InitError::InvalidConfig(format!(
                    "config.commands.{name}: `prefix` and `remove` need `member`"
                )));
            }
        }
        Ok(Self(config))
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let mut fields: Map<String, Value> = record.json()?;
        let entity = match fields.remove(&self.0.entity_field) {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Error::msg(format!("no `{}` field", self.0.entity_field))),
        };
        let command = match fields.remove(&self.0.command_field) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let rule = command.as_deref().and_then(|c| self.0.commands.get(c));
        let mut emit = out.emit(record);
        emit.key(Some(entity.as_bytes()));
        if rule.is_some_and(|r| r.delete) {
            emit.null_value();
            return Ok(());
        }
        if let Some(rule) = rule {
            for (k, v) in &rule.set {
                fields.insert(k.clone(), Value::String(v.clone()));
            }
            if let Some(member) = &rule.member {
                let Some(Value::String(id)) = fields.remove(member) else {
                    return Err(Error::msg(format!("command needs a `{member}` field")));
                };
                let value = if rule.remove {
                    Value::Null
                } else {
                    Value::String("1".into())
                };
                fields.insert(format!("{}{id}", rule.prefix), value);
            }
        }
        emit.value_owned(Value::Object(fields).to_string().as_bytes());
        Ok(())
    }
}

sluice_sdk::export_transform!(Snapshot);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::testing::{self, TestRecord};

    fn snapshot() -> Snapshot {
        Snapshot::init(
            testing::config(json!({
                "commands": {
                    "register": {"set": {"status": "active"}},
                    "add_friend": {"member": "friend_id", "prefix": "friend:"},
                    "remove_friend": {"member": "friend_id", "prefix": "friend:", "remove": true},
                    "unregister": {"delete": true},
                }
            }))
            .unwrap(),
        )
        .unwrap()
    }

    fn values(out: &sluice_sdk::TransformOutcome) -> Vec<(Option<String>, Option<Value>)> {
        out.outputs
            .records()
            .map(|r| {
                (
                    r.key_str().map(str::to_owned),
                    r.value_opt().map(|v| serde_json::from_slice(v).unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn folds_commands_into_field_updates() {
        let mut s = snapshot();
        let out = testing::transform(
            &mut s,
            [
                TestRecord::new(
                    r#"{"user_id":"1","command":"register","name":"Duffy","surename":"Duck"}"#,
                ),
                TestRecord::new(r#"{"user_id":"1","command":"add_friend","friend_id":"2"}"#),
                TestRecord::new(r#"{"user_id":"1","command":"remove_friend","friend_id":"2"}"#),
                TestRecord::new(r#"{"user_id":"1","command":"unregister"}"#),
                TestRecord::new(r#"{"command":"register"}"#),
            ],
        );
        assert_eq!(
            values(&out),
            [
                (
                    Some("1".into()),
                    Some(json!({"name":"Duffy","surename":"Duck","status":"active"}))
                ),
                (Some("1".into()), Some(json!({"friend:2":"1"}))),
                (Some("1".into()), Some(json!({"friend:2":null}))),
                (Some("1".into()), None),
            ]
        );
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 4);
    }
}
