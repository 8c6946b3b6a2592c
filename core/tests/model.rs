//! A reference model of ownership and generations, checked against the real worker fleet in the
//! simulator over random command sequences (a state-machine property test, in the manner of
//! firezone's connlib tests).
//!
//! The model knows only what an operator knows: which processes run, which drain, which crashed
//! or stopped, and how many partitions are listed. After every command the fleet is run until it
//! settles, and the model predicts:
//! - **ownership**: every listed partition has exactly one owner, a running worker that is not
//!   draining; everyone else holds nothing;
//! - **balance** (equal weights): every owner holds between `min(0.95 t, t − 1)` and
//!   `max(1.05 t, t + 1)` partitions, `t` being the partitions per owner (the Balanced strategy's
//!   quota and refinement line);
//! - **stickiness** (not yet true on every input, see the ignored tests at the end): a join
//!   (or a restart) only moves partitions to the newcomer; a crash, a stop or a drain only moves
//!   the leaver's partitions; a blip moves nothing;
//! - **generations**: every running worker applied the same generation; it never goes back, and
//!   it advances whenever the owners or the partition list changed.

use parti_core::sim::{numbered_partitions, NodeId, NodeStatus, Sim, SimConfig};
use parti_core::{Config, Generation, PartitionId, State};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// An operator's command.
#[derive(Clone, Debug)]
enum Cmd {
    /// Start a new process.
    Join,
    /// Kill the process of the `n`-th node (modulo the node count).
    Crash(usize),
    /// Start a new process on a crashed or stopped node.
    Restart(usize),
    /// Stop a node for good (no restart follows).
    Stop(usize),
    /// Drain a node.
    Drain(usize),
    /// List this many partitions and ask a running worker to refresh.
    Partitions(u32),
    /// Cut a node off NATS for a moment shorter than the fencing window, then heal it.
    Blip(usize),
}

/// What the model knows of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Running,
    Draining,
    Crashed,
    Stopped,
}

struct Model {
    nodes: Vec<Node>,
    partitions: u32,
}

impl Model {
    fn owners(&self) -> BTreeSet<NodeId> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i] == Node::Running)
            .map(NodeId)
            .collect()
    }

    fn running(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len())
            .filter(|i| matches!(self.nodes[*i], Node::Running | Node::Draining))
            .map(NodeId)
    }
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => Just(Cmd::Join),
        2 => any::<usize>().prop_map(Cmd::Crash),
        2 => any::<usize>().prop_map(Cmd::Restart),
        1 => any::<usize>().prop_map(Cmd::Stop),
        1 => any::<usize>().prop_map(Cmd::Drain),
        1 => (1u32..60).prop_map(Cmd::Partitions),
        1 => any::<usize>().prop_map(Cmd::Blip),
    ]
}

const SETTLE: Duration = Duration::from_secs(180);

/// Plays `cmds` on a fleet of `start` workers sharing `partitions`, checking the model after
/// every command (stickiness only if `sticky`).
fn play(
    seed: u64,
    start: u32,
    partitions: u32,
    cmds: &[Cmd],
    sticky: bool,
) -> Result<(), TestCaseError> {
    // No balance rounds: they move partitions between workers that stayed by design, which
    // the stickiness prediction below does not model.
    let config = Config {
        expected_workers: Some(start),
        rebalance_threshold: 10.0,
        ..Config::default()
    };
    let mut sim = Sim::new(config, SimConfig::default(), seed).unwrap();
    sim.set_partitions(numbered_partitions(partitions));
    let mut model = Model {
        nodes: vec![Node::Running; start as usize],
        partitions,
    };
    for _ in 0..start {
        sim.add_node();
    }
    settle(&mut sim, "the start")?;
    let mut gen = check(&sim, &model, None, "the start")?;
    let mut before = sim.owner_nodes().clone();
    for (step, c) in cmds.iter().enumerate() {
        let what = format!("command {step} ({c:?}) of {cmds:?}, seed {seed}");
        let count = model.nodes.len();
        let pick = |i: &usize, ok: &dyn Fn(Node) -> bool| {
            (0..count)
                .map(|k| (i + k) % count)
                .find(|k| ok(model.nodes[*k]))
        };
        // What may move: `None` for anything, else the nodes partitions may leave or reach.
        let mut movable: Option<BTreeSet<NodeId>> = None;
        match c {
            Cmd::Join => {
                if count >= 12 {
                    continue;
                }
                let n = sim.add_node();
                model.nodes.push(Node::Running);
                movable = Some([n].into());
            }
            Cmd::Crash(i) => {
                let Some(k) = pick(i, &|n| matches!(n, Node::Running | Node::Draining)) else {
                    continue;
                };
                if model.nodes[k] == Node::Running && model.owners().len() == 1 {
                    continue; // keep one owner, or nothing can settle
                }
                sim.crash(NodeId(k));
                model.nodes[k] = Node::Crashed;
                movable = Some([NodeId(k)].into());
            }
            Cmd::Restart(i) => {
                let Some(k) = pick(i, &|n| matches!(n, Node::Crashed | Node::Stopped)) else {
                    continue;
                };
                sim.restart(NodeId(k));
                model.nodes[k] = Node::Running;
                movable = Some([NodeId(k)].into());
            }
            Cmd::Stop(i) => {
                let Some(k) = pick(i, &|n| matches!(n, Node::Running | Node::Draining)) else {
                    continue;
                };
                if model.nodes[k] == Node::Running && model.owners().len() == 1 {
                    continue;
                }
                sim.stop(NodeId(k), true);
                model.nodes[k] = Node::Stopped;
                movable = Some([NodeId(k)].into());
            }
            Cmd::Drain(i) => {
                let Some(k) = pick(i, &|n| n == Node::Running) else {
                    continue;
                };
                if model.owners().len() == 1 {
                    continue; // someone must own the partitions
                }
                sim.drain(NodeId(k));
                model.nodes[k] = Node::Draining;
                movable = Some([NodeId(k)].into());
            }
            Cmd::Partitions(p) => {
                sim.set_partitions(numbered_partitions(*p));
                model.partitions = *p;
                let n = model.running().next().expect("one runs");
                sim.refresh(n);
            }
            Cmd::Blip(i) => {
                let Some(k) = pick(i, &|n| matches!(n, Node::Running | Node::Draining)) else {
                    continue;
                };
                sim.isolate(NodeId(k));
                sim.run_for(Duration::from_millis(1500));
                sim.heal(NodeId(k));
                movable = Some(BTreeSet::new());
            }
        }
        settle(&mut sim, &what)?;
        let now = check(&sim, &model, Some(gen), &what)?;
        let after = sim.owner_nodes().clone();
        if let Some(movable) = movable.as_ref().filter(|_| sticky) {
            for (p, owners) in &after {
                let was = before.get(p).and_then(|o| o.first());
                let is = owners[0];
                prop_assert!(
                    was.is_none_or(|w| *w == is || movable.contains(w) || movable.contains(&is)),
                    "{what}: {p} moved from {was:?} to {is} though only {movable:?} changed"
                );
            }
        }
        let changed =
            after.len() != before.len() || after.iter().any(|(p, o)| before.get(p) != Some(o));
        if changed {
            prop_assert!(
                now > gen,
                "{what}: the owners changed but the generation stayed {gen:?}"
            );
        }
        gen = now;
        before = after;
    }
    Ok(())
}

/// Lets the last command take effect (a heartbeat: a drain or a refresh shows nothing until
/// the leader acts on it), waits for a leader (after a blip of the leader, nobody leads until
/// its lease expires), then runs until the fleet is settled and quiet.
fn settle(sim: &mut Sim, what: &str) -> Result<(), TestCaseError> {
    sim.run_for(sim.template().heartbeat_interval);
    if sim
        .run_until_true(SETTLE, |s| s.leader().is_some())
        .is_none()
    {
        return Err(TestCaseError::fail(format!("{what}: no leader")));
    }
    if let Err(v) = sim.converge(SETTLE) {
        return Err(TestCaseError::fail(format!("{what}: not settled: {v:?}")));
    }
    prop_assert!(
        sim.violations().is_empty(),
        "{what}: {:?}",
        sim.violations()
    );
    Ok(())
}

/// Checks the model's predictions of ownership, balance and generations; returns the generation
/// the fleet applied.
fn check(
    sim: &Sim,
    model: &Model,
    last: Option<Generation>,
    what: &str,
) -> Result<Generation, TestCaseError> {
    let owners = model.owners();
    let listed: BTreeSet<PartitionId> = numbered_partitions(model.partitions)
        .iter()
        .map(|p| p.id().clone())
        .collect();
    let held = sim.owner_nodes();
    prop_assert_eq!(
        held.keys().cloned().collect::<BTreeSet<_>>(),
        listed,
        "{}: the owned partitions are not the listed ones",
        what
    );
    let mut counts: BTreeMap<NodeId, usize> = owners.iter().map(|n| (*n, 0)).collect();
    for (p, holders) in held {
        prop_assert_eq!(holders.len(), 1, "{}: {} held by {:?}", what, p, holders);
        let Some(c) = counts.get_mut(&holders[0]) else {
            return Err(TestCaseError::fail(format!(
                "{what}: {p} held by {}, which the model says holds nothing ({:?})",
                holders[0], model.nodes[holders[0].0]
            )));
        };
        *c += 1;
    }
    let t = model.partitions as f64 / owners.len() as f64;
    let (hi, lo) = ((t * 1.05).max(t + 1.0), (t * 0.95).min(t - 1.0));
    for (n, c) in &counts {
        let c = *c as f64;
        prop_assert!(
            c <= hi + 1e-9 && c >= lo - 1e-9,
            "{what}: {n} holds {c} of {} partitions on {} owners (bounds {lo:.2}..{hi:.2}): {counts:?}",
            model.partitions,
            owners.len()
        );
    }
    let mut gens = BTreeSet::new();
    for (i, node) in model.nodes.iter().enumerate() {
        let n = NodeId(i);
        let running = matches!(node, Node::Running | Node::Draining);
        prop_assert_eq!(
            sim.status(n) == NodeStatus::Running,
            running,
            "{}: node {} should be {:?}",
            what,
            n,
            node
        );
        if running {
            prop_assert_eq!(sim.state(n), State::Stable, "{}: node {}", what, n);
            let w = sim.worker(n).expect("running");
            gens.insert(w.applied_generation());
        }
    }
    prop_assert_eq!(
        gens.len(),
        1,
        "{}: workers applied different generations {:?}",
        what,
        gens
    );
    let gen = gens.into_iter().next().flatten();
    let Some(gen) = gen else {
        return Err(TestCaseError::fail(format!("{what}: nothing applied")));
    };
    if let Some(last) = last {
        prop_assert!(
            gen >= last,
            "{what}: the generation went back from {last:?} to {gen:?}"
        );
    }
    Ok(gen)
}

proptest! {
    // A fixed seed: CI plays the same 128 sequences every run (PROPTEST_CASES=5000 explores
    // further).
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x006d_6f64_656c),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_fleet_follows_the_reference_model(
        seed in any::<u64>(),
        start in 1u32..5,
        partitions in 1u32..60,
        cmds in proptest::collection::vec(cmd(), 1..12),
    ) {
        play(seed, start, partitions, &cmds, false)?;
    }
}

// Stickiness, as the model predicts it, fails on some inputs: partitions move between workers
// that stayed. Not a safety issue (every handoff is still revoke-before-grant), but unneeded
// moves (issue 12's placement promises). Minimal cases the property test found, kept to be fixed:

/// A drain, a crash, then a short blip of a third worker: a partition moves between two
/// workers that stayed, with no membership change at all.
#[test]
#[ignore = "known unneeded move (placement stickiness), found by the model test"]
fn a_blip_after_a_drain_and_a_crash_moves_nothing() {
    let cmds = [
        Cmd::Drain(1383649508671503634),
        Cmd::Crash(15081157521608702158),
        Cmd::Blip(0),
    ];
    play(621614480578111034, 4, 14, &cmds, true).unwrap();
}

/// Two partitions, workers crash, blip, restart and join: a join moves a partition between two
/// old workers.
#[test]
#[ignore = "known unneeded move (placement stickiness), found by the model test"]
fn a_join_moves_partitions_only_to_the_newcomer() {
    let cmds = [
        Cmd::Crash(2385104344726334279),
        Cmd::Blip(0),
        Cmd::Restart(0),
        Cmd::Crash(456874527270181424),
        Cmd::Blip(0),
        Cmd::Blip(0),
        Cmd::Join,
        Cmd::Join,
    ];
    play(14676288934216988429, 2, 2, &cmds, true).unwrap();
}
