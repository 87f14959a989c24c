-- The store's retention policy and its history (log operation `policy`).

-- One row per admitted policy operation: the policy it set (canonical JSON), or NULL when
-- it cleared the policy. `previous` is the commit whose policy it replaced (NULL: the
-- first); `set_by` the writing process (`host/pid/token`). The newest row is the policy now.
CREATE TABLE policies (
    log_position BIGINT PRIMARY KEY,
    previous     BIGINT,
    set_at       TIMESTAMP NOT NULL,
    set_by       VARCHAR NOT NULL,
    policy       VARCHAR
);

-- Every policy the store had, with who set it (the commit's author) and from which host.
CREATE VIEW v_policy_history AS
SELECT p.log_position, p.previous, p.set_at, c.author, split_part(p.set_by, '/', 1) AS host, p.set_by,
       p.policy IS NULL AS cleared, p.policy::JSON AS policy
FROM policies p LEFT JOIN commits c ON c.position = p.log_position;

-- No refold: a cas-repo without this migration stops at a commit holding a policy
-- operation (it names an operation it does not know), so no index made before it has
-- folded one.
