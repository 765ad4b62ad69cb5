"""The promotion gate's decision, a pure function of two evaluations' metrics and the policy (easy to test)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """The values of a PromotionPolicy that the decision reads."""

    min_gain: float = 0.0
    max_slice_drop: float = 0.05
    min_test_images: int = 20
    min_map50: float = 0.5
    min_slice_images: int = 5

    @classmethod
    def of(cls, policy) -> "Policy":
        return cls(
            min_gain=policy.min_gain,
            max_slice_drop=policy.max_slice_drop,
            min_test_images=policy.min_test_images,
            min_map50=policy.min_map50,
            min_slice_images=policy.min_slice_images,
        )

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Decision:
    """What the gate concluded."""

    passed: bool
    reasons: list
    comparison: dict
    map_diff: float | None


def _value(metrics: dict | None, *path):
    node = metrics or {}
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def compare(candidate: dict, production: dict | None) -> dict:
    """Side by side: overall, per class and per slice, candidate vs production and the difference."""

    def pair(a, b):
        delta = a - b if a is not None and b is not None else None
        return {"candidate": a, "production": b, "delta": delta}

    keys = ("map50", "map50_95", "precision", "recall")
    result = {"overall": {k: pair(_value(candidate, "overall", k), _value(production, "overall", k)) for k in keys}}
    classes = sorted(set(_value(candidate, "per_class") or {}) | set(_value(production, "per_class") or {}))
    result["per_class"] = {
        name: {k: pair(_value(candidate, "per_class", name, k), _value(production, "per_class", name, k)) for k in keys}
        for name in classes
    }
    result["slices"] = {}
    for kind in ("lighting", "robot", "source"):
        names = sorted(set(_value(candidate, "slices", kind) or {}) | set(_value(production, "slices", kind) or {}))
        result["slices"][kind] = {
            name: {
                "images": _value(candidate, "slices", kind, name, "images")
                or _value(production, "slices", kind, name, "images"),
                **{
                    k: pair(_value(candidate, "slices", kind, name, k), _value(production, "slices", kind, name, k))
                    for k in keys
                },
            }
            for name in names
        }
    return result


def decide(*, candidate: dict, production: dict | None, test_images: int, policy: Policy) -> Decision:
    """Pass or fail a candidate; every failed rule adds a reason, and a pass says why it passed."""
    reasons: list[str] = []
    failed = False
    comparison = compare(candidate, production)
    if test_images < policy.min_test_images:
        failed = True
        reasons.append(f"The test set has {test_images} images; the policy needs at least {policy.min_test_images}.")
    cand_map = _value(candidate, "overall", "map50_95") or 0.0
    map_diff = None
    if production is None:
        cand_map50 = _value(candidate, "overall", "map50") or 0.0
        if cand_map50 < policy.min_map50:
            failed = True
            reasons.append(f"First model: mAP50 {cand_map50:.3f} is below the floor {policy.min_map50:.3f}.")
        else:
            reasons.append(f"First model: mAP50 {cand_map50:.3f} reaches the floor {policy.min_map50:.3f}.")
    else:
        prod_map = _value(production, "overall", "map50_95") or 0.0
        map_diff = cand_map - prod_map
        if map_diff < policy.min_gain:
            failed = True
            reasons.append(
                f"mAP50-95 {cand_map:.3f} vs production {prod_map:.3f}: gain {map_diff:+.3f} is below the required "
                f"{policy.min_gain:+.3f}."
            )
        else:
            reasons.append(f"mAP50-95 {cand_map:.3f} vs production {prod_map:.3f}: gain {map_diff:+.3f}.")
        for kind, groups in comparison["slices"].items():
            for name, row in groups.items():
                a, b = row["map50_95"]["candidate"], row["map50_95"]["production"]
                if a is None or b is None:
                    continue
                if (row.get("images") or 0) < policy.min_slice_images:
                    continue
                if b - a > policy.max_slice_drop:
                    failed = True
                    reasons.append(
                        f"Slice {kind}={name}: mAP50-95 drops {b - a:.3f} ({b:.3f} → {a:.3f}), more than the allowed "
                        f"{policy.max_slice_drop:.3f}."
                    )
    return Decision(passed=not failed, reasons=reasons, comparison=comparison, map_diff=map_diff)
