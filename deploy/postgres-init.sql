-- Runs once, when the PostgreSQL volume is first initialised
-- (mounted into /docker-entrypoint-initdb.d by docker-compose.temporal.yml).
-- Temporal keeps its own databases (temporal, temporal_visibility), which
-- temporalio/auto-setup creates; trackflow's ledger lives in a separate
-- database owned by a separate role.
-- Change the password for a real deployment (and TRACKFLOW_LEDGER_URL with it).
CREATE ROLE trackflow WITH LOGIN PASSWORD 'trackflow';
CREATE DATABASE trackflow OWNER trackflow;
