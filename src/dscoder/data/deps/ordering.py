"""Dependency graphs: weakly connected components and the smallest-in-degree order (SPEC 1.2).

A graph is a mapping from each file to the set of files it depends on. Edges point from a
dependency to its dependent, so a file's in-degree is the number of its dependencies not yet
emitted and every file comes after what it imports. Cycles still resolve because the rule takes
the *smallest* in-degree, not only zero.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping


def _graph_nodes(dependencies: Mapping[str, set[str]]) -> set[str]:
    # A dependency that is not itself a key is still a file of the graph.
    nodes = set(dependencies)
    for targets in dependencies.values():
        nodes.update(targets)
    return nodes


def _dependents(dependencies: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """For each file, the files that depend on it (self-dependencies dropped)."""
    dependents: dict[str, list[str]] = {node: [] for node in _graph_nodes(dependencies)}
    for source, targets in dependencies.items():
        for target in targets:
            if target != source:
                dependents[target].append(source)
    return dependents


def weakly_connected_components(dependencies: Mapping[str, set[str]]) -> list[list[str]]:
    """The graph's components ignoring edge direction: each sorted, ordered by smallest path."""
    parent = {node: node for node in _graph_nodes(dependencies)}

    def find(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving keeps trees shallow
            node = parent[node]
        return node

    for source, targets in dependencies.items():
        for target in targets:
            a, b = find(source), find(target)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    return sorted((sorted(group) for group in groups.values()), key=lambda group: group[0])


def _order_component(
    component: list[str],
    dependencies: Mapping[str, set[str]],
    dependents: Mapping[str, list[str]],
    seed: int,
) -> list[str]:
    # Ties are broken by a random rank per file, drawn from a generator seeded by the run's seed
    # and the component's first path: the order is reproducible, independent of dict and set
    # iteration order, and unchanged by edits to other components of the repository.
    rng = random.Random(f"{seed}:{component[0]}")
    ranks = list(range(len(component)))
    rng.shuffle(ranks)
    rank = dict(zip(component, ranks, strict=True))
    in_degree = {node: len(dependencies.get(node, set()) - {node}) for node in component}
    heap = [(in_degree[node], rank[node], node) for node in component]
    heapq.heapify(heap)
    emitted: set[str] = set()
    order: list[str] = []
    while heap:
        degree, _, node = heapq.heappop(heap)
        # Lazy deletion: a decremented file was pushed again, so stale entries are skipped.
        if node in emitted or degree != in_degree[node]:
            continue
        emitted.add(node)
        order.append(node)
        for dependent in dependents[node]:
            if dependent not in emitted:
                in_degree[dependent] -= 1
                heapq.heappush(heap, (in_degree[dependent], rank[dependent], dependent))
    return order


def order_components(dependencies: Mapping[str, set[str]], seed: int) -> list[list[str]]:
    """Each weakly connected component in smallest-in-degree order, dependencies first.

    Components come sorted by their smallest path; within one, the file with the fewest
    not-yet-emitted dependencies is emitted next, ties broken at random from `seed`.
    """
    dependents = _dependents(dependencies)
    return [
        _order_component(component, dependencies, dependents, seed)
        for component in weakly_connected_components(dependencies)
    ]


def transitive_dependencies(dependencies: Mapping[str, set[str]], path: str) -> set[str]:
    """Every file `path` depends on directly or through others (itself excluded)."""
    seen: set[str] = set()
    stack = [path]
    while stack:
        for target in dependencies.get(stack.pop(), set()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    seen.discard(path)
    return seen
