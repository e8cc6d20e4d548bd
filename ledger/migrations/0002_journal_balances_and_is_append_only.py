"""
The journal's rules, held by PostgreSQL whatever writes to it (the ORM, raw SQL, psql):

- a posting is in its account's currency (a foreign key on (account, currency));
- every entry's postings sum to zero in each currency, checked at commit by a
  DEFERRABLE INITIALLY DEFERRED constraint trigger, so an entry's postings can be
  inserted one by one inside its transaction, but never committed unbalanced;
- entries and postings are append-only: UPDATE and DELETE are refused (a
  correction is a new entry); TRUNCATE (test teardown) is not a row change;
- each account's postings summed per day (ledger_accountday), kept by a
  statement-level trigger, so the report and the trial balance read a few rows.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE ledger_posting
    ADD CONSTRAINT posting_account_currency
    FOREIGN KEY (account_id, currency) REFERENCES ledger_account (id, currency)
    DEFERRABLE INITIALLY DEFERRED;

CREATE FUNCTION ledger_entry_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT currency, sum(amount) AS total INTO unbalanced
      FROM ledger_posting
     WHERE entry_id = NEW.entry_id
     GROUP BY currency
    HAVING sum(amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % % off', NEW.entry_id, unbalanced.total, unbalanced.currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_posting_entry_balances
    AFTER INSERT ON ledger_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_must_balance();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only: % on % refused (a correction is a new entry)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER ledger_posting_append_only
    BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_sum_account_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_accountday (account_id, day, amount)
    SELECT account_id, occurred_on, sum(amount) FROM new_postings GROUP BY account_id, occurred_on
    ORDER BY account_id, occurred_on
    ON CONFLICT (account_id, day) DO UPDATE SET amount = ledger_accountday.amount + EXCLUDED.amount;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_posting_account_days
    AFTER INSERT ON ledger_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_sum_account_days();
"""

BACKWARD = """
DROP TRIGGER ledger_posting_account_days ON ledger_posting;
DROP FUNCTION ledger_sum_account_days();
DROP TRIGGER ledger_entry_append_only ON ledger_entry;
DROP TRIGGER ledger_posting_append_only ON ledger_posting;
DROP FUNCTION ledger_refuse_change();
DROP TRIGGER ledger_posting_entry_balances ON ledger_posting;
DROP FUNCTION ledger_entry_must_balance();
ALTER TABLE ledger_posting DROP CONSTRAINT posting_account_currency;
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_books_mirror_and_journal")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
