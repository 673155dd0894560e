//! A scripted in-memory record for the writer's unit tests: it applies
//! batches like the real stores (exactly once per writer seq, ranges, the
//! may-create flag) and fails the way a script tells it to, so that every
//! branch of the writer's state table is reached deterministically.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{Claim, Claimed, FailureKind, Repeat, StoreError};
use crate::counter::{
    Applied, Committed, CounterId, CounterInfo, CounterSpec, DayCount, Refusal, SetOutcome, Totals,
    in_range,
};

/// What the next `apply_batch` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Applies the batch normally.
    Apply,
    /// Fails with an outage; nothing is applied.
    Outage,
    /// Applies and commits the batch, then fails as if the answer was lost.
    LostAnswer,
    /// Fails with a momentary conflict (SQLITE_BUSY); nothing is applied.
    Conflict,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub values: BTreeMap<CounterId, i64>,
    pub last_seq: HashMap<String, i64>,
    /// Steps to play, one per `apply_batch`; `Apply` when empty.
    pub script: VecDeque<Step>,
    /// While true every call fails with an outage (the script is not used).
    pub down: bool,
    /// Any batch holding one of these fails with a data error (the whole
    /// statement fails, as one bad row fails a PostgreSQL statement).
    pub poisoned: std::collections::BTreeSet<CounterId>,
    /// Every `apply_batch` call: (seq, deltas), in order.
    pub calls: Vec<(i64, Vec<(CounterId, i64)>)>,
    /// The seqs of the batches that were committed, in order.
    pub applied: Vec<i64>,
    /// Request ids recorded with their numbers, per counter.
    pub request_ids: HashMap<(CounterId, String), i64>,
    /// The visits of every committed batch, in order.
    pub visits: Vec<crate::visitors::DayVisits>,
}

#[derive(Clone, Default)]
pub struct FakeStore {
    pub state: Arc<Mutex<FakeState>>,
}

fn outage() -> StoreError {
    StoreError::Fake(FailureKind::Outage)
}

impl FakeStore {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.lock().down {
            Err(outage())
        } else {
            Ok(())
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.check_up()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.check_up()
    }

    pub async fn apply_batch(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        visits: &[crate::visitors::DayVisits],
        may_create: bool,
    ) -> Result<Applied, StoreError> {
        let result = self.apply_deltas(writer_id, seq, deltas, may_create);
        if let Ok(Applied::Now { committed, .. }) = &result {
            let mut state = self.lock();
            for visit in visits {
                if committed.iter().any(|c| c.id == visit.counter) {
                    state.visits.push(visit.clone());
                }
            }
        }
        result
    }

    fn apply_deltas(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        may_create: bool,
    ) -> Result<Applied, StoreError> {
        let mut state = self.lock();
        state.calls.push((seq, deltas.to_vec()));
        if state.down {
            return Err(outage());
        }
        let step = state.script.pop_front().unwrap_or(Step::Apply);
        match &step {
            Step::Outage => return Err(outage()),
            Step::Conflict => return Err(StoreError::Fake(FailureKind::Conflict)),
            _ => {}
        }
        if deltas.iter().any(|(id, _)| state.poisoned.contains(id)) {
            return Err(StoreError::Fake(FailureKind::Data));
        }
        if state
            .last_seq
            .get(writer_id)
            .is_some_and(|&last| last >= seq)
        {
            return Ok(Applied::Before);
        }
        state.last_seq.insert(writer_id.to_string(), seq);
        state.applied.push(seq);
        let mut committed = Vec::new();
        let mut refused = Vec::new();
        let mut created = 0;
        for (id, delta) in deltas {
            match state.values.get(id).copied() {
                Some(value) if in_range(value + delta) => {
                    state.values.insert(id.clone(), value + delta);
                    committed.push(Committed {
                        id: id.clone(),
                        value: value + delta,
                        epoch: 1,
                    });
                }
                Some(_) => refused.push((id.clone(), Refusal::OutOfRange)),
                None if may_create => {
                    state.values.insert(id.clone(), *delta);
                    created += 1;
                    committed.push(Committed {
                        id: id.clone(),
                        value: *delta,
                        epoch: 1,
                    });
                }
                None => refused.push((id.clone(), Refusal::NotCreated)),
            }
        }
        if step == Step::LostAnswer {
            return Err(outage());
        }
        Ok(Applied::Now {
            committed,
            created,
            refused,
        })
    }

    /// As the real stores: ids recorded before leave everything unchanged
    /// and are answered; otherwise the ids of the committed counters are
    /// recorded with the batch (also when its answer is then lost).
    pub async fn apply_claimed(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        claims: &[Claim],
        visits: &[crate::visitors::DayVisits],
        may_create: bool,
    ) -> Result<Claimed, StoreError> {
        {
            let state = self.lock();
            let repeated: Vec<Repeat> = claims
                .iter()
                .filter_map(|c| {
                    let number = state
                        .request_ids
                        .get(&(c.counter.clone(), c.request_id.clone()))?;
                    Some(Repeat {
                        counter: c.counter.clone(),
                        request_id: c.request_id.clone(),
                        number: *number,
                    })
                })
                .collect();
            if !state.down && !repeated.is_empty() {
                return Ok(Claimed::Repeated(repeated));
            }
        }
        let result = self
            .apply_batch(writer_id, seq, deltas, visits, may_create)
            .await;
        let mut state = self.lock();
        let committed: Vec<CounterId> = match &result {
            Ok(crate::counter::Applied::Now { committed, .. }) => {
                committed.iter().map(|c| c.id.clone()).collect()
            }
            Err(_) if state.applied.last() == Some(&seq) => {
                deltas.iter().map(|(id, _)| id.clone()).collect()
            }
            _ => Vec::new(),
        };
        {
            for claim in claims.iter().filter(|c| committed.contains(&c.counter)) {
                let delta = deltas.iter().find(|(id, _)| id == &claim.counter);
                if let (Some(value), Some((_, delta))) =
                    (state.values.get(&claim.counter).copied(), delta)
                {
                    state.request_ids.insert(
                        (claim.counter.clone(), claim.request_id.clone()),
                        value - delta + claim.position,
                    );
                }
            }
        }
        result.map(Claimed::Applied)
    }

    pub async fn prune_request_ids(&self, _keep: std::time::Duration) -> Result<u64, StoreError> {
        self.check_up()?;
        Ok(0)
    }

    pub async fn reset(&self, id: &CounterId) -> Result<i64, StoreError> {
        self.check_up()?;
        self.lock().values.insert(id.clone(), 0);
        Ok(2)
    }

    pub async fn set(&self, id: &CounterId, value: i64) -> Result<Option<SetOutcome>, StoreError> {
        self.check_up()?;
        let mut state = self.lock();
        Ok(state.values.get_mut(id).map(|current| {
            let old_value = std::mem::replace(current, value);
            SetOutcome {
                old_value,
                value,
                epoch: 2,
            }
        }))
    }

    pub async fn create(&self, spec: &CounterSpec) -> Result<CounterInfo, StoreError> {
        self.check_up()?;
        let mut state = self.lock();
        if state.values.contains_key(spec.id()) {
            return Err(StoreError::AlreadyExists(spec.id().clone()));
        }
        state.values.insert(spec.id().clone(), spec.value());
        Ok(CounterInfo {
            id: spec.id().clone(),
            value: spec.value(),
            epoch: 1,
            created_ms: 0,
            enable_reset: spec.enable_reset(),
            update_lowerbound: spec.bounds().lower(),
            update_upperbound: spec.bounds().upper(),
            admin_key_hash: spec.admin_key_hash().map(str::to_string),
        })
    }

    pub async fn info(&self, id: &CounterId) -> Result<Option<CounterInfo>, StoreError> {
        self.check_up()?;
        Ok(self.lock().values.get(id).map(|&value| CounterInfo {
            id: id.clone(),
            value,
            epoch: 1,
            created_ms: 0,
            enable_reset: false,
            update_lowerbound: 0,
            update_upperbound: 1,
            admin_key_hash: None,
        }))
    }

    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, StoreError> {
        self.check_up()?;
        Ok(self.lock().values.get(id).copied())
    }

    pub async fn delete(&self, id: &CounterId) -> Result<bool, StoreError> {
        self.check_up()?;
        Ok(self.lock().values.remove(id).is_some())
    }

    pub async fn visitor_salt(
        &self,
        _day: &str,
        _yesterday: &str,
        fresh: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.check_up()?;
        Ok(fresh.to_vec())
    }

    pub async fn first_hit_only(&self, id: &CounterId) -> Result<Option<bool>, StoreError> {
        self.check_up()?;
        Ok(self.lock().values.get(id).map(|_| false))
    }

    pub async fn claim_first_hit(
        &self,
        _id: &CounterId,
        _day: &str,
        _hash: i64,
    ) -> Result<bool, StoreError> {
        self.check_up()?;
        Ok(true)
    }

    pub async fn visitor_salt_days(&self) -> Result<Vec<String>, StoreError> {
        self.check_up()?;
        Ok(Vec::new())
    }

    pub async fn visitors_between(
        &self,
        _id: &CounterId,
        _first: &str,
        _last: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.check_up()?;
        Ok(Vec::new())
    }

    pub async fn history(&self, _id: &CounterId, _days: u32) -> Result<Vec<DayCount>, StoreError> {
        self.check_up()?;
        Ok(Vec::new())
    }

    pub async fn totals(&self) -> Result<Totals, StoreError> {
        self.check_up()?;
        Ok(Totals {
            counters: self.lock().values.len() as i64,
            hits_today: 0,
        })
    }

    /// Namespaces by the sum of their values, each with its largest
    /// counters; no days (the fake keeps no history).
    pub async fn busiest(
        &self,
        namespaces: u32,
        counters: u32,
        _days: u32,
    ) -> Result<Vec<super::BusyRow>, StoreError> {
        self.check_up()?;
        let state = self.lock();
        let mut by_ns: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
        for (id, value) in &state.values {
            by_ns
                .entry(&id.namespace)
                .or_default()
                .push((&id.key, *value));
        }
        // A namespace, its total and its counters, largest first.
        type Ranked<'a> = (&'a str, i64, Vec<(&'a str, i64)>);
        let mut ranked: Vec<Ranked> = by_ns
            .into_iter()
            .map(|(ns, mut keys)| {
                keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                (ns, keys.iter().map(|(_, v)| v).sum(), keys)
            })
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Ok(ranked
            .into_iter()
            .take(namespaces as usize)
            .flat_map(|(ns, total, keys)| {
                let count = keys.len() as i64;
                keys.into_iter()
                    .take(counters as usize)
                    .map(move |(key, value)| {
                        (
                            ns.to_string(),
                            count,
                            total,
                            key.to_string(),
                            value,
                            None,
                            None,
                        )
                    })
            })
            .collect())
    }

    pub async fn count_counters(&self) -> Result<i64, StoreError> {
        self.check_up()?;
        Ok(self.lock().values.len() as i64)
    }

    pub async fn prune_writers(&self) -> Result<u64, StoreError> {
        self.check_up()?;
        Ok(0)
    }
}

// --- Export and import (`hitcounter export` / `import`): values only. ---
impl FakeStore {
    pub async fn export_each(
        &self,
        _page: u32,
        mut each: impl FnMut(super::CounterRecord) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<u64, StoreError> {
        self.check_up()?;
        let values = self.lock().values.clone();
        let mut exported = 0;
        for (id, value) in values {
            exported += 1;
            let record = super::CounterRecord {
                id,
                value,
                details: None,
                history: Vec::new(),
                visitors: Vec::new(),
            };
            if each(record).is_break() {
                break;
            }
        }
        Ok(exported)
    }

    pub async fn import_batch(
        &self,
        records: &[super::CounterRecord],
        on_conflict: super::OnConflict,
    ) -> Result<Vec<Committed>, StoreError> {
        self.check_up()?;
        let mut state = self.lock();
        let mut written = Vec::new();
        for record in records {
            if on_conflict == super::OnConflict::Skip && state.values.contains_key(&record.id) {
                continue;
            }
            state.values.insert(record.id.clone(), record.value);
            written.push(Committed {
                id: record.id.clone(),
                value: record.value,
                epoch: 1,
            });
        }
        Ok(written)
    }
}
// --- End of export and import. ---
