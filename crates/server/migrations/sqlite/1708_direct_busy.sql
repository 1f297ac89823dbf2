-- Cluster mode: who is in a 1:1 call, and on which node the call lives (call/direct/rows.rs).
-- Inserted at `call_dial` for both sides with ON CONFLICT DO NOTHING (a conflict: that user is
-- busy, unless the row is stale: its node is gone), deleted when the call ends; each node
-- sweeps its own stale rows. When a node dies, another tells the users of its rows `lost`
-- (`about`: the call's caller and callee addresses and whether it is a video call, JSON) and
-- deletes them. Unused on one node.
CREATE TABLE direct_busy (
    uid BIGINT PRIMARY KEY,
    call_id BIGINT NOT NULL,
    node TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    about TEXT NOT NULL
);
CREATE INDEX direct_busy_call ON direct_busy (call_id);
