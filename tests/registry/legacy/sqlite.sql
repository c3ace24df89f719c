-- A registry database as the numbered migrations (schema_migrations version 1) left it,
-- with a few rows of each table: the starting point of tests/registry/test_migrations.py.
BEGIN TRANSACTION;
CREATE TABLE accounts (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
INSERT INTO "accounts" VALUES('siti','argon2-hash','operator',1700000000);
CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL
        );
INSERT INTO "audit" VALUES(1,1700000000,'siti','person.set','000000000000000000000001','');
CREATE TABLE doors (
            facility_id TEXT NOT NULL REFERENCES facilities (id),
            door_id TEXT NOT NULL,
            name TEXT NOT NULL,
            direction TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (facility_id, door_id)
        );
INSERT INTO "doors" VALUES('mall-a','main-in','Main entrance','entrance',1700000060);
CREATE TABLE facilities (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            address TEXT NOT NULL,
            type TEXT NOT NULL,
            capacity INTEGER NOT NULL,
            pic_name TEXT NOT NULL,
            pic_email TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            activation_hash TEXT,
            activation_expires_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
INSERT INTO "facilities" VALUES('mall-a','Mall A','Jl. Sudirman 1','mall',500,'Siti','siti@example.org','active',NULL,NULL,NULL,1700000000,1700000050);
CREATE TABLE persons (
            subject TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            doses INTEGER NOT NULL,
            changed_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        );
INSERT INTO "persons" VALUES('000000000000000000000001','Dewi','green',2,1700000000,1700000000);
INSERT INTO "persons" VALUES('000000000000000000000002','Budi','red',1,1700000100,1700000000);
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
INSERT INTO "schema_migrations" VALUES(1,1796274637);
CREATE TABLE status_changes (
            cursor INTEGER PRIMARY KEY AUTOINCREMENT,
            subject TEXT NOT NULL,
            status TEXT NOT NULL,
            doses INTEGER NOT NULL,
            changed_at INTEGER NOT NULL
        );
INSERT INTO "status_changes" VALUES(1,'000000000000000000000001','green',2,1700000000);
INSERT INTO "status_changes" VALUES(2,'000000000000000000000002','yellow',1,1700000000);
INSERT INTO "status_changes" VALUES(3,'000000000000000000000002','red',1,1700000100);
CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            username TEXT,
            facility_id TEXT,
            created_at INTEGER NOT NULL,
            expires_at INTEGER
        );
INSERT INTO "tokens" VALUES('tokenhash1','hub',NULL,'mall-a',1700000000,1800000000);
CREATE TABLE visit_bounds (
            facility_id TEXT PRIMARY KEY,
            max_length INTEGER NOT NULL
        );
INSERT INTO "visit_bounds" VALUES('mall-a',3600);
CREATE TABLE visits (
            facility_id TEXT NOT NULL,
            visit_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            door_id TEXT NOT NULL,
            check_in INTEGER NOT NULL,
            check_out INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            PRIMARY KEY (facility_id, visit_id)
        );
INSERT INTO "visits" VALUES('mall-a','v1','000000000000000000000001','main-in',1700000200,1700003800,1700004000);
CREATE INDEX tokens_facility ON tokens (facility_id, kind);
CREATE INDEX facilities_state ON facilities (state);
CREATE INDEX visits_subject_time ON visits (subject, check_in);
CREATE INDEX visits_facility_time ON visits (facility_id, check_in);
CREATE INDEX visits_check_out ON visits (check_out);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('status_changes',3);
INSERT INTO "sqlite_sequence" VALUES('audit',1);
COMMIT;
