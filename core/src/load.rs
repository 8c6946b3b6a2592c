//! Measured load and static weight on one scale: the sizes a plan balances.

use crate::{Error, Partition, PartitionId};
use std::collections::BTreeMap;

/// Most a weight is multiplied by to give measured loads a finer grain than whole weights.
const MAX_RESOLUTION: u64 = 1024;

/// The partitions with the sizes a plan balances: each partition's measured load where `loads`
/// has one, its static weight otherwise, on one scale.
///
/// Loads come in the application's unit, weights in their own, so loads are rescaled: the
/// measured partitions keep their total static weight (a factor `k = Σ weight / Σ load` over
/// them turns a load into weight units). An unmeasured partition therefore counts as a
/// measured partition of average load per unit of weight; report every held partition to be
/// balanced by load alone. Sizes are whole numbers at a resolution `r`: weights are multiplied
/// by `r` (1024, or less when the total would not fit in `u64`), loads become
/// `round(load · k · r)`, and every size is at least 1 (an idle partition weighs almost
/// nothing). Loads whose sum overflows an `f64` are taken over the largest first (the same
/// proportions). With no loads, or only zero loads, the partitions come back unchanged. The order
/// and IDs are kept. Loads of partitions not in `partitions` are ignored ([`validate`] refuses
/// them).
pub fn effective_partitions(
    partitions: &[Partition],
    loads: &BTreeMap<PartitionId, f64>,
) -> Vec<Partition> {
    let (mut weight, mut load) = (0u128, 0f64);
    let mut total = 0u128;
    for p in partitions {
        total += u128::from(p.weight());
        if let Some(l) = loads.get(p.id()) {
            weight += u128::from(p.weight());
            load += l;
        }
    }
    if weight == 0 || load.is_nan() || load <= 0.0 {
        return partitions.to_vec();
    }
    // Finite loads whose sum overflows: the same proportions, from loads over the largest.
    let mut unit = 1.0;
    if load.is_infinite() {
        unit = loads.values().fold(0f64, |m, &l| m.max(l));
        load = partitions
            .iter()
            .filter_map(|p| loads.get(p.id()))
            .map(|l| l / unit)
            .sum();
    }
    // Room for the total (measured sizes round up by at most one each) with a factor 2 spare.
    let room = u128::from(u64::MAX) / 2 / (total + partitions.len() as u128).max(1);
    let r = room.clamp(1, u128::from(MAX_RESOLUTION)) as u64;
    let k = weight as f64 / load * r as f64;
    partitions
        .iter()
        .map(|p| {
            let size = match loads.get(p.id()) {
                Some(l) => ((l / unit * k).round() as u64).max(1),
                None => p.weight().saturating_mul(r),
            };
            Partition::from_id(p.id().clone(), size)
        })
        .collect()
}

/// The leader's balance rule (`Config::rebalance_threshold`): the most loaded worker, at
/// `max_over_mean` times the mean load (both relative to capacity), is out of balance above
/// `1 + threshold` times the mean, or times the heaviest partition alone on the biggest worker
/// (`heaviest_over_mean`) where that is more: no placement does better than that.
pub fn out_of_balance(max_over_mean: f64, heaviest_over_mean: f64, threshold: f64) -> bool {
    max_over_mean > (1.0 + threshold) * heaviest_over_mean.max(1.0)
}

/// Refuses a load of `p` that is negative or not finite, naming the partition: the one rule
/// for a load, wherever it comes from.
pub(crate) fn check(p: &PartitionId, load: f64) -> Result<(), Error> {
    if load.is_finite() && load >= 0.0 {
        return Ok(());
    }
    Err(Error::InvalidPartition {
        partition: p.short().into_owned(),
        reason: format!("load {load} must be a finite number >= 0"),
    })
}

/// Refuses a load that is negative or not finite ([`check`]), or of a partition not in
/// `partitions` (sorted or not), naming the partition.
pub fn validate(partitions: &[Partition], loads: &BTreeMap<PartitionId, f64>) -> Result<(), Error> {
    if loads.is_empty() {
        return Ok(());
    }
    let listed: std::collections::BTreeSet<&PartitionId> =
        partitions.iter().map(Partition::id).collect();
    for (p, l) in loads {
        check(p, *l)?;
        if !listed.contains(p) {
            return Err(Error::InvalidPartition {
                partition: p.short().into_owned(),
                reason: "has a load but is not in the partition list".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(weights: &[u64]) -> Vec<Partition> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Partition::new(&[format!("p{i}")], *w).unwrap())
            .collect()
    }

    fn loads(of: &[(usize, f64)]) -> BTreeMap<PartitionId, f64> {
        of.iter()
            .map(|(i, l)| (PartitionId::parse(&format!("p{i}")).unwrap(), *l))
            .collect()
    }

    fn sizes(p: &[Partition]) -> Vec<u64> {
        p.iter().map(Partition::weight).collect()
    }

    #[test]
    fn measured_partitions_keep_their_total_weight_and_the_rest_keep_their_weight() {
        let p = parts(&[1, 1, 2, 3]);
        let e = effective_partitions(&p, &loads(&[(0, 10.0), (1, 30.0)]));
        // Two measured partitions of weight 1 each: total 2 (x1024), split 1:3 by load.
        assert_eq!(sizes(&e), vec![512, 1536, 2048, 3072]);
        assert_eq!(
            e.iter().map(|p| p.id().clone()).collect::<Vec<_>>(),
            p.iter().map(|p| p.id().clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn no_loads_or_zero_loads_change_nothing_and_an_idle_partition_weighs_one() {
        let p = parts(&[5, 7]);
        assert_eq!(effective_partitions(&p, &BTreeMap::new()), p);
        assert_eq!(effective_partitions(&p, &loads(&[(0, 0.0)])), p);
        let e = effective_partitions(&p, &loads(&[(0, 0.0), (1, 2.0)]));
        assert_eq!(sizes(&e), vec![1, 12 * 1024]);
    }

    #[test]
    fn huge_weights_lower_the_resolution_instead_of_overflowing() {
        let p = parts(&[u64::MAX / 4, u64::MAX / 4]);
        let e = effective_partitions(&p, &loads(&[(0, 1.0)]));
        let total: u128 = e.iter().map(|p| u128::from(p.weight())).sum();
        assert!(total <= u128::from(u64::MAX), "{total}");
        assert_eq!(
            e[1].weight(),
            p[1].weight(),
            "resolution 1 for such weights"
        );
    }

    #[test]
    fn bad_loads_are_refused_naming_the_partition() {
        let p = parts(&[1, 1]);
        for (l, words) in [
            (-1.0, "finite number >= 0"),
            (f64::NAN, "finite"),
            (f64::INFINITY, "finite"),
        ] {
            let e = validate(&p, &loads(&[(1, l)])).unwrap_err().to_string();
            assert!(e.contains("p1") && e.contains(words), "{e}");
        }
        let e = validate(&p, &loads(&[(7, 1.0)])).unwrap_err().to_string();
        assert!(
            e.contains("p7") && e.contains("not in the partition list"),
            "{e}"
        );
        assert!(validate(&p, &loads(&[(0, 0.0), (1, 1e300)])).is_ok());
    }
}
