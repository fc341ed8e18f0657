//! Masking a store URL's password before it is shown anywhere: errors, Debug, `palisade check`.

/// `url` with the password of its user info and any `password=` parameter
/// replaced by `***`. A raw `@` inside a password is taken as part of it
/// (user info ends at the last `@`), so masking errs toward hiding too much.
pub(crate) fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return mask_parameters(url);
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = rest.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***{host}"),
                None => rest.to_owned(),
            }
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", mask_parameters(&rest))
}

/// Every `password=VALUE` (any case), the value ending at `&` or whitespace.
fn mask_parameters(text: &str) -> String {
    const NAME: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(found) = lower.get(from..).and_then(|tail| tail.find(NAME)) {
        let value_start = from + found + NAME.len();
        out.push_str(text.get(from..value_start).unwrap_or_default());
        out.push_str("***");
        let tail = text.get(value_start..).unwrap_or_default();
        let value_len = tail
            .find(|c: char| c == '&' || c.is_whitespace())
            .unwrap_or(tail.len());
        from = value_start + value_len;
    }
    out.push_str(text.get(from..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::mask_url;

    fn check(url: &str, expected: &str) {
        assert_eq!(mask_url(url), expected, "masking `{url}`");
    }

    #[test]
    fn passwords_are_masked_wherever_they_are_written() {
        check(
            "postgres://palisade:hunter2@db:5432/state",
            "postgres://palisade:***@db:5432/state",
        );
        check(
            "postgresql://u:p%40ss@db/state?sslmode=disable",
            "postgresql://u:***@db/state?sslmode=disable",
        );
        // A raw `@` or `/` in the password: everything up to the last `@` is hidden.
        check("postgres://u:a@b/c@db/state", "postgres://u:***@db/state");
        check(
            "postgres://db/state?user=u&password=hunter2&application_name=x",
            "postgres://db/state?user=u&password=***&application_name=x",
        );
        check(
            "postgres://db/state?PassWord=hunter2",
            "postgres://db/state?PassWord=***",
        );
        check(
            "host=db password=hunter2 user=u",
            "host=db password=*** user=u",
        );
    }

    #[test]
    fn urls_without_a_password_are_shown_as_written() {
        check(
            "postgres://palisade@127.0.0.1:55432/palisade",
            "postgres://palisade@127.0.0.1:55432/palisade",
        );
        check("postgres://db/state", "postgres://db/state");
        check("sqlite", "sqlite");
        check("", "");
    }
}
