//! Cycles in a call graph: its strongly connected components (Tarjan), each one a set of
//! services that reach each other — what seed 001 calls an architecture that is wrong.

/// Every strongly connected component with more than one node, or one node calling itself;
/// each sorted, the list sorted. `edges` are (from, to) indices below `nodes`.
pub fn cycles(nodes: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); nodes];
    for &(a, b) in edges {
        if a < nodes && b < nodes {
            adj[a].push(b);
        }
    }
    let mut index = vec![usize::MAX; nodes];
    let mut low = vec![0usize; nodes];
    let mut on_stack = vec![false; nodes];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut out = Vec::new();
    // An explicit call stack: (node, next neighbour to look at), so a deep graph cannot
    // overflow the thread's stack.
    for root in 0..nodes {
        if index[root] != usize::MAX {
            continue;
        }
        let mut calls = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = calls.last_mut() {
            if let Some(&w) = adj[v].get(*i) {
                *i += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 || adj[v].contains(&v) {
                    component.sort_unstable();
                    out.push(component);
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::cycles;

    #[test]
    fn a_chain_has_no_cycle() {
        assert!(cycles(3, &[(0, 1), (1, 2)]).is_empty());
    }

    #[test]
    fn a_ring_and_a_self_call_are_cycles_and_the_tail_is_not() {
        // 0→1→2→0 is one ring; 3 calls itself; 4 hangs off the ring.
        let edges = [(0, 1), (1, 2), (2, 0), (2, 4), (3, 3)];
        assert_eq!(cycles(5, &edges), vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn two_rings_joined_one_way_stay_two() {
        let edges = [(0, 1), (1, 0), (1, 2), (2, 3), (3, 2)];
        assert_eq!(cycles(4, &edges), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn a_long_ring_does_not_overflow() {
        let n = 200_000;
        let edges: Vec<_> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        assert_eq!(cycles(n, &edges)[0].len(), n);
    }
}
