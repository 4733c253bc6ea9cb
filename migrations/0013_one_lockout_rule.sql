-- The lockout rule of failed sign-ins in one place, for player logins
-- (`login_failures`, migration 0008) and console sign-ins
-- (`staff_login_failures`, migration 0011) alike: what one more failure makes
-- of an email's failures `earlier` and lockout `until`. The failures of the
-- last `minutes` are kept, this one added; when they are `max_failures` or
-- more, the email is locked for `minutes` from now, else its lockout stays
-- as it was. Times are the database's clock, the one every instance shares.
-- A first failure is `failure_counted('{}', NULL, …)`.
CREATE FUNCTION failure_counted(earlier TIMESTAMPTZ[], until TIMESTAMPTZ, max_failures INT, minutes INT)
RETURNS TABLE (recent TIMESTAMPTZ[], locked_until TIMESTAMPTZ)
LANGUAGE sql STABLE AS $$
    SELECT kept.recent,
           CASE WHEN cardinality(kept.recent) >= max_failures
                THEN now() + make_interval(mins => minutes) ELSE until END
    FROM (SELECT ARRAY(SELECT t FROM unnest(earlier) AS t
                       WHERE t > now() - make_interval(mins => minutes) ORDER BY t) || now() AS recent) AS kept
$$;
