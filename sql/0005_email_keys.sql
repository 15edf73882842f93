-- One account per mailbox (see src/email.rs): email_key is the SHA-256 of
-- the address's canonical, case-folded form, and its unique key is what
-- decides whether an address is taken. Rows from before this migration are
-- keyed by the server at start-up (`Db::backfill_email_keys`), since the
-- folding is not something SQL can compute; until then their key is NULL,
-- which the unique key allows any number of times.
--
-- password_unpeppered marks a hash imported from elsewhere while a
-- PASSWORD_PEPPER is set: it verifies without the pepper, and the first
-- login replaces it with a peppered hash.
ALTER TABLE users
    ADD COLUMN email_key BINARY(32) NULL AFTER email,
    ADD UNIQUE KEY users_email_key (email_key),
    ADD COLUMN password_unpeppered TINYINT(1) NOT NULL DEFAULT 0 AFTER password_hash;
