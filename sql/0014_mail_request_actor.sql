-- The admin who asked for a mail (issue 17): POST
-- /admin/users/{id}/password-reset records a request like a forgot does,
-- and the mail resolver's password_reset_requested event then names the
-- admin as its actor. NULL for a request the account's owner made.
ALTER TABLE mail_requests
    ADD COLUMN actor_id BIGINT UNSIGNED NULL;
