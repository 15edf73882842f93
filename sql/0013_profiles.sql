-- Profiles (issue 17): what an account says about its person, shown in the
-- user object. `name` is a display name (at most 200 characters), `locale`
-- a BCP 47 language tag, `metadata` a JSON object the application owns (at
-- most 4 KiB serialized), stored as text so both MySQL and MariaDB read it
-- the same way; NULL reads as {}. The rules are src/profile.rs's.
ALTER TABLE users
    ADD COLUMN name VARCHAR(200) NULL,
    ADD COLUMN locale VARCHAR(35) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN metadata TEXT NULL;
