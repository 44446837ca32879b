//! The arithmetic of a Deployment rollout, as upstream does it, with no IO: surge and
//! unavailability bounds, the pod-template hash, how far the new ReplicaSet may grow, how
//! far old ones may shrink, and proportional scaling of several ReplicaSets.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label that ties a ReplicaSet and its pods to one template.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The revision annotation on Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The deployment's replicas when the ReplicaSet was last scaled by it.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The deployment's replicas plus surge at that time.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => pct(s, total, round_up),
        None => pct(default, total, round_up),
    }
}

fn pct(s: &str, total: i32, round_up: bool) -> i32 {
    let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
        return s.parse().unwrap_or(0);
    };
    let v = p * i64::from(total);
    (if round_up { (v + 99).div_euclid(100) } else { v.div_euclid(100) }) as i32
}

/// `(maxSurge, maxUnavailable)` for `replicas`: surge rounds up, unavailability down, and
/// both zero becomes unavailability one (upstream's `ResolveFenceposts`).
pub fn fenceposts(surge: Option<&IntOrString>, unavailable: Option<&IntOrString>, replicas: i32) -> (i32, i32) {
    let s = scaled(surge, replicas, true, "25%").max(0);
    let mut u = scaled(unavailable, replicas, false, "25%").max(0);
    if s == 0 && u == 0 {
        u = 1;
    }
    (s, u)
}

/// Upstream's `SafeEncodeString` alphabet (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template: FNV-1a over its canonical JSON (without the hash
/// label) and the collision count, spelled as upstream spells it.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    let mut bytes = serde_json::to_vec(&t).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    let mut hash: u32 = 0x811c9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x01000193);
    }
    hash.to_string().bytes().map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char).collect()
}

/// Whether two templates are the same apart from the hash label.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
            if labels.is_empty()
                && let Some(m) = t.metadata.as_mut()
            {
                m.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}

/// One ReplicaSet as the rollout arithmetic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rs {
    /// Its name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

/// How many replicas the new ReplicaSet may have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_replicas(desired: i32, surge: i32, all_total: i32, new_replicas: i32) -> i32 {
    let max_total = desired + surge;
    if all_total >= max_total {
        return new_replicas;
    }
    let up = (max_total - all_total).min(desired - new_replicas).max(0);
    new_replicas + up
}

/// Scale-downs of old ReplicaSets (oldest first) that keep at least
/// `desired - maxUnavailable` pods available: first the unhealthy replicas, then
/// available ones. Returns `(index into old, new replicas)` pairs.
pub fn scale_down_old(desired: i32, unavailable: i32, new: &Rs, old: &[Rs]) -> Vec<(usize, i32)> {
    let mut old: Vec<Rs> = old.to_vec();
    let old_total: i32 = old.iter().map(|r| r.replicas).sum();
    if old_total == 0 {
        return Vec::new();
    }
    let all_total = old_total + new.replicas;
    let min_available = desired - unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut changes: Vec<(usize, i32)> = Vec::new();
    // Unhealthy replicas first: scaling them down costs no availability.
    let mut cleaned = 0;
    for (i, rs) in old.iter_mut().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = rs.replicas - rs.available;
        if rs.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        rs.replicas -= down;
        cleaned += down;
        changes.push((i, rs.replicas));
    }
    // Then available replicas, as long as enough stay available.
    let available_total: i32 = old.iter().map(|r| r.available.min(r.replicas)).sum::<i32>() + new.available;
    if available_total > min_available {
        let mut budget = available_total - min_available;
        for (i, rs) in old.iter_mut().enumerate() {
            if budget <= 0 {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let down = rs.replicas.min(budget);
            rs.replicas -= down;
            budget -= down;
            match changes.iter_mut().find(|(j, _)| *j == i) {
                Some(c) => c.1 = rs.replicas,
                None => changes.push((i, rs.replicas)),
            }
        }
    }
    changes
}

/// Spreads a change of `delta` replicas over active ReplicaSets in proportion to their
/// sizes (largest first; what is left goes to the first). Returns the new sizes.
pub fn proportional(sizes: &[i32], delta: i32) -> Vec<i32> {
    let total: i32 = sizes.iter().sum();
    if total == 0 || sizes.is_empty() {
        let mut out = sizes.to_vec();
        if let Some(first) = out.first_mut() {
            *first = (*first + delta).max(0);
        }
        return out;
    }
    let mut out: Vec<i32> = sizes.to_vec();
    let mut applied = 0;
    for (i, s) in sizes.iter().enumerate() {
        let share = ((i64::from(*s) * i64::from(delta)) as f64 / f64::from(total)).trunc() as i32;
        let share = if delta > 0 { share.min(delta - applied) } else { share.max(delta - applied) };
        out[i] = (s + share).max(0);
        applied += out[i] - s;
    }
    if applied != delta {
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by_key(|i| std::cmp::Reverse(sizes[*i]));
        for i in order {
            let rest = delta - applied;
            if rest == 0 {
                break;
            }
            let next = (out[i] + rest).max(0);
            applied += next - out[i];
            out[i] = next;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32, available: i32) -> Rs {
        Rs { name: String::new(), replicas, available }
    }

    #[test]
    fn fenceposts_round_like_upstream() {
        assert_eq!(fenceposts(None, None, 10), (3, 2));
        assert_eq!(fenceposts(None, None, 1), (1, 0));
        assert_eq!(fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 5), (0, 1));
        assert_eq!(fenceposts(Some(&IntOrString::Int(1)), Some(&IntOrString::Int(0)), 5), (1, 0));
        assert_eq!(
            fenceposts(Some(&IntOrString::String("50%".into())), Some(&IntOrString::String("50%".into())), 5),
            (3, 2)
        );
        assert_eq!(fenceposts(None, None, 2000), (500, 500));
    }

    #[test]
    fn a_rolling_update_respects_both_bounds_at_every_step() {
        for (desired, surge, unavailable) in [(10, 3, 2), (5, 1, 0), (5, 0, 1), (2000, 500, 500), (3, 1, 1)] {
            let mut new = rs(0, 0);
            let mut old = vec![rs(desired, desired)];
            for _step in 0..200 {
                let total: i32 = old.iter().map(|r| r.replicas).sum::<i32>() + new.replicas;
                new.replicas = new_rs_replicas(desired, surge, total, new.replicas);
                for (i, n) in scale_down_old(desired, unavailable, &new, &old) {
                    old[i].replicas = n;
                    old[i].available = old[i].available.min(n);
                }
                let total: i32 = old.iter().map(|r| r.replicas).sum::<i32>() + new.replicas;
                let available: i32 = old.iter().map(|r| r.available).sum::<i32>() + new.available;
                assert!(total <= desired + surge, "{desired}/{surge}/{unavailable}: {total} pods");
                assert!(available >= desired - unavailable, "{desired}/{surge}/{unavailable}: {available} available");
                // The new pods become available before the next step.
                new.available = new.replicas;
                if new.replicas == desired && old.iter().all(|r| r.replicas == 0) {
                    break;
                }
            }
            assert_eq!((new.replicas, old[0].replicas), (desired, 0), "{desired}/{surge}/{unavailable} finished");
        }
    }

    #[test]
    fn proportional_scaling_keeps_the_ratio_and_the_total() {
        assert_eq!(proportional(&[6, 4], 5), vec![9, 6]);
        assert_eq!(proportional(&[6, 4], -5), vec![3, 2]);
        assert_eq!(proportional(&[5, 3, 2], 1).iter().sum::<i32>(), 11);
        assert_eq!(proportional(&[0], 3), vec![3]);
        assert_eq!(proportional(&[1, 1], -5), vec![0, 0]);
    }

    #[test]
    fn hashes_are_stable_and_ignore_the_hash_label() {
        let mut t: PodTemplateSpec = serde_json::from_value(serde_json::json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "web:1"}]}})).unwrap();
        let h = template_hash(&t, None);
        assert!(!h.is_empty() && h.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        let plain = t.clone();
        t.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(HASH_LABEL.into(), h.clone());
        assert_eq!(template_hash(&t, None), h);
        assert!(same_template(&t, &plain));
    }
}
