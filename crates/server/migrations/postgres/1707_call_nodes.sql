-- Cluster mode: which node holds each group's call (cluster/calls.rs). A row names the node
-- placement picked; it is deleted when that node's room has ended, or by the next join once
-- the node is gone.
CREATE TABLE call_nodes (
    gid BIGINT PRIMARY KEY,
    node TEXT NOT NULL,
    placed_at BIGINT NOT NULL
);
