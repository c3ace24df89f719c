-- A registry database as the numbered migrations (schema_migrations version 1) left it,
-- with a few rows of each table: the starting point of tests/registry/test_migrations.py.
BEGIN;
CREATE TABLE persons (
                subject TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                status TEXT NOT NULL,
                doses INTEGER NOT NULL,
                changed_at BIGINT NOT NULL,
                created_at BIGINT NOT NULL
            );
CREATE TABLE status_changes (
                cursor BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
                subject TEXT NOT NULL,
                status TEXT NOT NULL,
                doses INTEGER NOT NULL,
                changed_at BIGINT NOT NULL
            );
CREATE TABLE accounts (
                username TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                created_at BIGINT NOT NULL
            );
CREATE TABLE tokens (
                token_hash TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                username TEXT,
                facility_id TEXT,
                created_at BIGINT NOT NULL,
                expires_at BIGINT
            );
CREATE INDEX tokens_facility ON tokens (facility_id, kind);
CREATE INDEX tokens_expires_at ON tokens (expires_at);
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
                activation_expires_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            );
CREATE INDEX facilities_state ON facilities (state);
CREATE INDEX facilities_pic_email ON facilities (pic_email);
CREATE TABLE doors (
                facility_id TEXT NOT NULL REFERENCES facilities (id),
                door_id TEXT NOT NULL,
                name TEXT NOT NULL,
                direction TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (facility_id, door_id)
            );
CREATE TABLE visits (
                facility_id TEXT NOT NULL,
                visit_id TEXT NOT NULL,
                subject TEXT NOT NULL,
                door_id TEXT NOT NULL,
                check_in BIGINT NOT NULL,
                check_out BIGINT NOT NULL,
                received_at BIGINT NOT NULL,
                PRIMARY KEY (facility_id, visit_id)
            );
CREATE INDEX visits_subject_time ON visits (subject, check_in);
CREATE INDEX visits_facility_time ON visits (facility_id, check_in);
CREATE INDEX visits_check_out ON visits (check_out);
CREATE TABLE visit_bounds (
                facility_id TEXT PRIMARY KEY,
                max_length BIGINT NOT NULL
            );
CREATE TABLE audit (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at BIGINT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT NOT NULL
            );
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
INSERT INTO schema_migrations VALUES (1, 1700000000);
INSERT INTO facilities VALUES('mall-a','Mall A','Jl. Sudirman 1','mall',500,'Siti','siti@example.org','active',NULL,NULL,NULL,1700000000,1700000050);
INSERT INTO accounts VALUES('siti','argon2-hash','operator',1700000000);
INSERT INTO audit OVERRIDING SYSTEM VALUE VALUES(1,1700000000,'siti','person.set','000000000000000000000001','');
INSERT INTO doors VALUES('mall-a','main-in','Main entrance','entrance',1700000060);
INSERT INTO persons VALUES('000000000000000000000001','Dewi','green',2,1700000000,1700000000);
INSERT INTO persons VALUES('000000000000000000000002','Budi','red',1,1700000100,1700000000);
INSERT INTO status_changes OVERRIDING SYSTEM VALUE VALUES(1,'000000000000000000000001','green',2,1700000000);
INSERT INTO status_changes OVERRIDING SYSTEM VALUE VALUES(2,'000000000000000000000002','yellow',1,1700000000);
INSERT INTO status_changes OVERRIDING SYSTEM VALUE VALUES(3,'000000000000000000000002','red',1,1700000100);
INSERT INTO tokens VALUES('tokenhash1','hub',NULL,'mall-a',1700000000,1800000000);
INSERT INTO visit_bounds VALUES('mall-a',3600);
INSERT INTO visits VALUES('mall-a','v1','000000000000000000000001','main-in',1700000200,1700003800,1700004000);
SELECT setval(pg_get_serial_sequence('status_changes', 'cursor'), 3);
SELECT setval(pg_get_serial_sequence('audit', 'id'), 1);
COMMIT;
