-- A database made by voltorch 0.1.0's migrations (before sqlite-utils built the schema), with one key.
BEGIN TRANSACTION;
CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL);
INSERT INTO "_migrations" VALUES('0001_state',1700000000.0);
INSERT INTO "_migrations" VALUES('0002_events',1700000000.0);
INSERT INTO "_migrations" VALUES('events_0002_compaction',1700000000.0);
INSERT INTO "_migrations" VALUES('workflows_0001',1700000000.0);
INSERT INTO "_migrations" VALUES('watcher_0001',1700000000.0);
INSERT INTO "_migrations" VALUES('coordination_0001',1700000000.0);
CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            capabilities TEXT NOT NULL,
            max_concurrency INTEGER NOT NULL,
            llm TEXT,
            labels TEXT NOT NULL,
            register_time REAL NOT NULL,
            window TEXT NOT NULL,
            tasks_completed INTEGER NOT NULL,
            tasks_failed INTEGER NOT NULL,
            last_error TEXT,
            last_seen REAL
        ) WITHOUT ROWID;
CREATE TABLE coordinations (
            id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            source_agent_id TEXT NOT NULL,
            target_agent_id TEXT NOT NULL,
            requested_agent_ids TEXT NOT NULL,
            plan TEXT NOT NULL,
            agent_ids TEXT NOT NULL,
            required_capabilities TEXT NOT NULL,
            task TEXT NOT NULL,
            context TEXT NOT NULL,
            priority INTEGER NOT NULL,
            timeout REAL NOT NULL,
            deadline REAL NOT NULL,
            condition TEXT,
            correlation_id TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            traceparent TEXT NOT NULL,
            max_agents INTEGER NOT NULL,
            execution_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            attempts TEXT NOT NULL,
            results TEXT NOT NULL,
            output TEXT NOT NULL,
            structured_output TEXT,
            error TEXT,
            selection TEXT,
            create_time REAL NOT NULL,
            start_time REAL,
            end_time REAL
        ) WITHOUT ROWID;
CREATE TABLE errors (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            component TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            time REAL NOT NULL,
            details TEXT NOT NULL,
            event_seq INTEGER
        );
CREATE TABLE event_compaction (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            through_seq INTEGER NOT NULL,
            through_time REAL NOT NULL
        );
INSERT INTO "event_compaction" VALUES(1,0,0.0);
CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            data TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            causation_id TEXT NOT NULL,
            priority INTEGER NOT NULL,
            traceparent TEXT NOT NULL,
            tracestate TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            time REAL NOT NULL
        );
CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            version INTEGER NOT NULL,
            create_revision INTEGER NOT NULL,
            mod_revision INTEGER NOT NULL,
            expire_at REAL,
            update_time REAL NOT NULL
        ) WITHOUT ROWID;
INSERT INTO "kv" VALUES('old/key','{"made": "0.1.0"}',1,1,1,NULL,1700000000.0);
CREATE TABLE kv_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            revision INTEGER NOT NULL,
            key TEXT NOT NULL,
            type TEXT NOT NULL,
            value TEXT,
            version INTEGER NOT NULL,
            create_revision INTEGER NOT NULL,
            expire_at REAL,
            update_time REAL NOT NULL,
            prev_value TEXT,
            prev_version INTEGER,
            prev_mod_revision INTEGER
        );
INSERT INTO "kv_history" VALUES(1,1,'old/key','PUT','{"made": "0.1.0"}',1,1,NULL,1700000000.0,NULL,NULL,NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO "meta" VALUES('revision',1);
CREATE TABLE metric_samples (
            name TEXT NOT NULL,
            attributes TEXT NOT NULL,
            time REAL NOT NULL,
            value REAL NOT NULL,
            histogram TEXT
        );
CREATE TABLE snapshot_items (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            expire_at REAL,
            PRIMARY KEY (snapshot_id, key)
        ) WITHOUT ROWID;
CREATE TABLE snapshots (
            id TEXT PRIMARY KEY,
            revision INTEGER NOT NULL,
            prefix TEXT NOT NULL,
            description TEXT NOT NULL,
            key_count INTEGER NOT NULL,
            create_time REAL NOT NULL
        );
CREATE TABLE workflow_executions (
            id TEXT PRIMARY KEY,
            request_id TEXT UNIQUE,
            request_digest TEXT NOT NULL,
            template_name TEXT NOT NULL,
            template_version INTEGER NOT NULL,
            definition TEXT NOT NULL,
            status TEXT NOT NULL,
            parameters TEXT NOT NULL,
            result TEXT,
            error TEXT,
            priority INTEGER NOT NULL,
            labels TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            traceparent TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            create_time REAL NOT NULL,
            start_time REAL,
            end_time REAL,
            update_time REAL NOT NULL,
            run_elapsed REAL NOT NULL DEFAULT 0,
            run_since REAL
        );
CREATE TABLE workflow_steps (
            execution_id TEXT NOT NULL REFERENCES workflow_executions(id) ON DELETE CASCADE,
            step_id TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            output TEXT NOT NULL,
            structured TEXT,
            error TEXT,
            agent_id TEXT NOT NULL,
            coordination_id TEXT NOT NULL,
            item TEXT,
            start_time REAL,
            end_time REAL,
            next_retry_time REAL,
            PRIMARY KEY (execution_id, step_id)
        );
CREATE TABLE workflow_templates (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            category TEXT NOT NULL,
            builtin INTEGER NOT NULL,
            digest TEXT NOT NULL,
            definition TEXT NOT NULL,
            create_time REAL NOT NULL,
            PRIMARY KEY (name, version)
        );
CREATE INDEX kv_expire ON kv(expire_at) WHERE expire_at IS NOT NULL;
CREATE INDEX kv_history_key ON kv_history(key, id);
CREATE INDEX kv_history_revision ON kv_history(revision);
CREATE INDEX events_correlation ON events(correlation_id, seq) WHERE correlation_id != '';
CREATE INDEX events_time ON events(time);
CREATE INDEX events_trace ON events(trace_id) WHERE trace_id != '';
CREATE INDEX workflow_templates_category ON workflow_templates(category, name, version);
CREATE INDEX workflow_executions_created ON workflow_executions(create_time, id);
CREATE INDEX workflow_executions_status ON workflow_executions(status, create_time);
CREATE INDEX workflow_executions_template ON workflow_executions(template_name, create_time);
CREATE INDEX errors_trace ON errors(trace_id) WHERE trace_id != '';
CREATE INDEX errors_correlation ON errors(correlation_id) WHERE correlation_id != '';
CREATE INDEX errors_time ON errors(time);
CREATE INDEX metric_samples_name ON metric_samples(name, time);
CREATE INDEX metric_samples_time ON metric_samples(time);
CREATE UNIQUE INDEX coordinations_request ON coordinations(request_id) WHERE request_id != '';
CREATE INDEX coordinations_active ON coordinations(status) WHERE status IN ('queued', 'running');
CREATE INDEX coordinations_status ON coordinations(status, id);
CREATE INDEX coordinations_correlation ON coordinations(correlation_id, id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('kv_history',1);
COMMIT;
