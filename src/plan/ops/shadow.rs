//! The shadow column that a rename and a type change share. Neither can change the column in
//! place while the old application still uses it, so each adds a second column beside it
//! (nullable, no default: catalog only), a trigger that keeps the second right on every write
//! of either application version, and a backfill that copies every existing row into it; abort
//! drops both again. What contract does with the pair is each operation's own (a rename keeps
//! the original under the new name, a type change swaps the shadow in).

use super::{Assignment, Backfill, OpPlan, Step, alter};
use crate::classify::LockMode;
use crate::parse::Name;
use crate::sql::{Ident, RowTrigger};

pub struct ShadowColumn<'a> {
    pub table: &'a Name,
    /// The shadow's name.
    pub name: String,
    /// Its type, as the user wrote it.
    pub ty: String,
    /// BEFORE INSERT OR UPDATE, not fired for zdm's backfill (`NOT_DURING_BACKFILL`).
    pub trigger: RowTrigger<'a>,
    /// PL/pgSQL that sets `NEW.<shadow>` (and, for a rename, `NEW.<original>`).
    pub trigger_body: String,
    /// The shadow's value for an existing row, which the backfill assigns.
    pub copy: String,
    /// The key the backfill walks (empty: by ctid).
    pub key: Vec<String>,
    /// What the steps say they do: adding the column, installing the trigger, undoing both.
    pub says: [String; 3],
}

impl ShadowColumn<'_> {
    /// Adds the expand steps, the backfill and the undo of expand to `plan`.
    pub fn add_to(self, plan: &mut OpPlan) {
        let [adding, syncing, undoing] = self.says;
        let shadow = Ident(&self.name);
        plan.expand.push(Step::tx(
            adding,
            alter(self.table, &format!("ADD COLUMN {shadow} {}", self.ty)),
            LockMode::AccessExclusive,
            self.table,
        ));
        plan.expand.push(Step::tx(
            syncing,
            self.trigger.create(&self.trigger_body),
            LockMode::ShareRowExclusive,
            self.table,
        ));
        plan.push_backfill(Backfill {
            table: self.table.clone(),
            key: self.key,
            set: vec![Assignment {
                column: self.name.clone(),
                expr: self.copy,
            }],
            filter: None,
            alias: None,
            from: None,
            after_step: 0,
            shadow_copy: true,
        });
        plan.down_expand.push(Step::tx(
            undoing,
            format!(
                "{};\n{}",
                self.trigger.drop(),
                alter(self.table, &format!("DROP COLUMN IF EXISTS {shadow}"))
            ),
            LockMode::AccessExclusive,
            self.table,
        ));
    }
}
