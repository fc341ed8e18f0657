//! The rule table: each rule's kind, the literal anchors that make it worth running, the window it looks at around an anchor, its pattern and its check.
//!
//! Every pattern was written from the vendor's published token format (or, for
//! the generic rules, from how assignments are spelled in code and config);
//! none comes from another scanner. Patterns are byte regexes without Unicode
//! classes: secrets are ASCII, and ASCII classes keep the windows cheap. A
//! pattern's `s` group (or one of `dq`, `sq`, `bq`, `uq` for a quoted or bare
//! value) is the secret itself; without one, the whole match is.

/// What a match must pass, after the pattern, to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The pattern says it all (fixed structure with a checksum-like shape).
    Pattern,
    /// The random part must not be a mask or a run of one character.
    TokenBody,
    /// GitHub's CRC-32 over the token's random part.
    GithubChecksum,
    /// The header decodes to a JSON object with `alg`.
    Jwt,
    /// The block runs to its `-----END` line and carries a key's worth of base64.
    PemBlock,
    /// The base64 decodes to a PEM private key.
    PemBase64,
    /// AWS's own documentation examples end in `EXAMPLE`.
    AwsKeyId,
    /// A 40-character AWS secret key: random, not AWS's documented example.
    AwsSecret,
    /// `name = value`: the name says what class of secret, the value must fit it.
    Assignment,
    /// A password in a command line or a call: not a placeholder.
    Password,
    /// A password in a slot that holds nothing else (URL user info, a
    /// connection string's `Password=`): anything but a template or a mask.
    SlotPassword,
    /// A value that must look random (header tokens).
    Random,
    /// A `data:` value in a document that says `kind: Secret`.
    KubernetesSecret,
}

/// A quick test of the bytes at an anchor, before the window's regex runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Open,
    /// An assignment operator (or quote, or `>`) follows the name.
    Assignment,
    /// `://` is followed by user info (an `@` before the host ends).
    UserInfo,
    /// The name runs on to a closing quote and a comma (`"API_KEY", "…"`).
    QuotedPair,
    /// `is` and a quote follow within the sentence (`password is 'x'`).
    SaysIs,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleSpec {
    /// Stable, kebab-case, family first (`aws-…`, `github-…`).
    pub kind: &'static str,
    /// Literals, matched ASCII case-insensitively, that start a window.
    pub anchors: &'static [&'static str],
    /// Bytes of text before an anchor's start that the window includes.
    pub before: usize,
    /// Bytes of text after an anchor's start that the window includes.
    pub after: usize,
    pub pattern: &'static str,
    pub check: Check,
    /// Lower wins when two detections overlap: a vendor format (0) over a URL
    /// or header (1) over a generic assignment (2).
    pub priority: u8,
    pub gate: Gate,
}

const fn token(
    kind: &'static str,
    anchors: &'static [&'static str],
    pattern: &'static str,
) -> RuleSpec {
    RuleSpec {
        kind,
        anchors,
        before: 0,
        after: 512,
        pattern,
        check: Check::TokenBody,
        priority: 0,
        gate: Gate::Open,
    }
}

/// Keywords that name a secret in an assignment; their presence is what the
/// generic rules are anchored on.
const ASSIGNMENT_ANCHORS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
];

/// The name part of an assignment: an identifier around a keyword.
macro_rules! key_name {
    () => {
        r"(?P<k>[a-z0-9_.-]*(?:pass|pwd|secret|token|key|auth|credential)[a-z0-9_.-]*)"
    };
}

/// A quoted value or a bare one, each in its own group.
macro_rules! value {
    () => {
        r#"(?:\\?"(?P<dq>[^"\\\r\n]{1,256})\\?"|'(?P<sq>[^'\r\n]{1,256})'|`(?P<bq>[^`\r\n]{1,256})`|(?P<uq>[^\s"'`,;<>(){}\[\]&|\\]{1,256}))"#
    };
}

pub(crate) const RULES: &[RuleSpec] = &[
    // --- AWS: access key ids are 20 characters with a type prefix; the secret
    // key is 40 characters of base64 alphabet and is only told apart from
    // other base64 by what names it.
    RuleSpec {
        check: Check::AwsKeyId,
        ..token(
            "aws-access-key-id",
            &["akia", "asia", "abia", "acca", "a3t"],
            r"(?-u)\b(?P<s>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})\b",
        )
    },
    RuleSpec {
        before: 48,
        check: Check::AwsSecret,
        ..token(
            "aws-secret-access-key",
            &["secret"],
            r#"(?i-u)(?:aws[_.-]?secret[_.-]?(?:access[_.-]?)?key|secret[_.-]?access[_.-]?key|aws[_.-]?secret)["']?[ \t]*(?::=|=>|=|:|,)[ \t]*["']?(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        )
    },
    RuleSpec {
        after: 160,
        check: Check::AwsSecret,
        ..token(
            "aws-secret-access-key",
            &["akia", "asia"],
            r#"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]{16}["']?[ \t]*[,;:|\t][ \t]*["']?(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        )
    },
    RuleSpec {
        after: 4096,
        ..token(
            "aws-session-token",
            &["iqojb3jpz2lu", "fwogzxivyxdz"],
            r"(?-u)(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9/+=]{80,}",
        )
    },
    RuleSpec {
        after: 4096,
        ..token(
            "aws-bedrock-api-key",
            &["absk"],
            r"(?-u)\bABSK[A-Za-z0-9+/]{60,}={0,2}",
        )
    },
    RuleSpec {
        after: 4096,
        ..token(
            "aws-bedrock-api-key",
            &["bedrock-api-key-"],
            r"(?-u)\bbedrock-api-key-[A-Za-z0-9+/]{60,}={0,2}",
        )
    },
    token(
        "aws-mws-token",
        &["amzn.mws."],
        r"(?-u)\bamzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
    ),
    // --- Google: API keys are `AIza` and 35 more; OAuth client secrets
    // `GOCSPX-`; access tokens `ya29.`; refresh tokens `1//0`.
    token(
        "gcp-api-key",
        &["aiza"],
        r"(?-u)\bAIza[0-9A-Za-z_-]{35}(?:[^0-9A-Za-z_-]|$)",
    ),
    token(
        "google-oauth-client-secret",
        &["gocspx-"],
        r"(?-u)\bGOCSPX-[0-9A-Za-z_-]{28}\b",
    ),
    token(
        "google-oauth-token",
        &["ya29."],
        r"(?-u)\bya29\.[0-9A-Za-z_-]{30,}",
    ),
    token(
        "google-oauth-refresh-token",
        &["1//0"],
        r"(?-u)\b1//0[0-9A-Za-z_-]{40,}",
    ),
    // --- Azure: storage account keys (64 bytes, base64) in connection
    // strings; shared access keys (32 bytes); Entra ID client secrets carry
    // `Q~` after three characters and a digit; DevOps PATs (84 characters)
    // carry `AZDO` at offset 76.
    RuleSpec {
        before: 0,
        ..token(
            "azure-storage-key",
            &["accountkey"],
            r"(?i-u)\baccountkey[ \t]*=[ \t]*(?P<s>[A-Za-z0-9+/]{86}==)",
        )
    },
    token(
        "azure-shared-access-key",
        &["sharedaccesskey"],
        r"(?i-u)\bsharedaccesskey[ \t]*=[ \t]*(?P<s>[A-Za-z0-9+/]{42,44}={0,2})",
    ),
    token(
        "azure-sas-signature",
        &["sig="],
        r"(?-u)[?&;]sig=(?P<s>[A-Za-z0-9%+/]{40,}(?:%3D|=){0,2})",
    ),
    RuleSpec {
        before: 5,
        ..token(
            "azure-ad-client-secret",
            &["q~"],
            r"(?-u)(?:^|[^A-Za-z0-9_~.-])(?P<s>[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34})(?:[^A-Za-z0-9_~.-]|$)",
        )
    },
    RuleSpec {
        before: 76,
        ..token(
            "azure-devops-pat",
            &["azdo"],
            r"(?-u)\b[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}\b",
        )
    },
    // --- GitHub: classic tokens end in a CRC-32 checksum; fine-grained PATs
    // are `github_pat_`, 22, `_`, 59.
    RuleSpec {
        check: Check::GithubChecksum,
        ..token(
            "github-token",
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
            r"(?-u)\bgh[pousr]_[A-Za-z0-9]{36}\b",
        )
    },
    token(
        "github-fine-grained-pat",
        &["github_pat_"],
        r"(?-u)\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b",
    ),
    // --- GitLab: every token type has its own `gl…-` prefix; runner
    // registration tokens start `GR1348941`.
    token(
        "gitlab-token",
        &[
            "glpat-", "gldt-", "glrt-", "glptt-", "gloas-", "glsoat-", "glffct-", "glcbt-",
            "glimt-", "glagent-", "glft-", "glwt-",
        ],
        r"(?-u)\bgl(?:pat|dt|rt|ptt|oas|soat|ffct|cbt|imt|agent|ft|wt)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_.-]+)?",
    ),
    token(
        "gitlab-runner-registration-token",
        &["gr1348941"],
        r"(?-u)\bGR1348941[A-Za-z0-9_-]{20}\b",
    ),
    // --- Slack: `xox` and a type letter (config tokens `xoxe.xoxp-`), app
    // tokens `xapp-`, and incoming webhooks.
    RuleSpec {
        before: 1,
        ..token(
            "slack-token",
            &["xox"],
            // Configuration tokens (`xoxe.xoxp-1-…`) are long; the `xoxp-`
            // inside one is not a token of its own.
            r"(?-u)(?:^|[^.A-Za-z0-9_])(?P<s>xoxe\.xox[a-z]-[A-Za-z0-9-]{100,250}|xox[a-z]-[A-Za-z0-9-]{24,250})",
        )
    },
    token(
        "slack-app-token",
        &["xapp-"],
        r"(?-u)\bxapp-[0-9]+-[A-Z0-9]+-[0-9]+-[A-Za-z0-9]{20,}",
    ),
    token(
        "slack-webhook",
        &["hooks.slack.com"],
        r"(?-u)hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_-]{20,})",
    ),
    // --- Payments.
    token(
        "stripe-key",
        &[
            "sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_",
        ],
        r"(?-u)\b[rs]k_(?:live|test|prod)_[A-Za-z0-9]{10,247}\b",
    ),
    token(
        "stripe-webhook-secret",
        &["whsec_"],
        r"(?-u)\bwhsec_[A-Za-z0-9+/=]{32,}",
    ),
    token(
        "square-token",
        &["sq0atp-", "sq0csp-", "sq0idp-"],
        r"(?-u)\bsq0(?:atp|csp|idp)-[A-Za-z0-9_-]{22,60}\b",
    ),
    token("square-token", &["eaaa"], r"(?-u)\bEAAA[A-Za-z0-9_-]{60}\b"),
    token(
        "shopify-token",
        &["shpat_", "shpca_", "shppa_", "shpss_"],
        r"(?-u)\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",
    ),
    // --- Model providers.
    token(
        "openai-api-key",
        &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-none-"],
        r"(?-u)\bsk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}",
    ),
    RuleSpec {
        before: 80,
        ..token(
            "openai-api-key",
            &["t3blbkfj"],
            r"(?-u)\bsk-[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}",
        )
    },
    token(
        "openrouter-api-key",
        &["sk-or-v1-"],
        r"(?-u)\bsk-or-v1-[a-f0-9]{64}\b",
    ),
    token(
        "anthropic-api-key",
        &["sk-ant-"],
        r"(?-u)\bsk-ant-(?:api|admin|sid|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{80,100}AA\b",
    ),
    token(
        "huggingface-token",
        &["hf_"],
        r"(?-u)\bhf_[A-Za-z0-9]{34}\b",
    ),
    token(
        "huggingface-token",
        &["api_org_"],
        r"(?-u)\bapi_org_[A-Za-z0-9]{34}\b",
    ),
    token("groq-api-key", &["gsk_"], r"(?-u)\bgsk_[A-Za-z0-9]{52}\b"),
    token(
        "perplexity-api-key",
        &["pplx-"],
        r"(?-u)\bpplx-[A-Za-z0-9]{48}\b",
    ),
    token("xai-api-key", &["xai-"], r"(?-u)\bxai-[A-Za-z0-9]{80}\b"),
    token(
        "replicate-api-token",
        &["r8_"],
        r"(?-u)\br8_[A-Za-z0-9]{37}\b",
    ),
    token(
        "tavily-api-key",
        &["tvly-"],
        r"(?-u)\btvly-(?:dev-|prod-)?[A-Za-z0-9]{32}\b",
    ),
    token("firecrawl-api-key", &["fc-"], r"(?-u)\bfc-[a-f0-9]{32}\b"),
    token(
        "jina-api-key",
        &["jina_"],
        r"(?-u)\bjina_[a-f0-9]{32}[A-Za-z0-9_-]{28,}",
    ),
    token(
        "langsmith-api-key",
        &["lsv2_"],
        r"(?-u)\blsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}\b",
    ),
    // --- Package registries.
    token("npm-token", &["npm_"], r"(?-u)\bnpm_[A-Za-z0-9]{36}\b"),
    RuleSpec {
        after: 2048,
        ..token(
            "pypi-token",
            &["pypi-ageichlwas5vcmc", "pypi-agendgvzdc5wexbplm9yzw"],
            r"(?-u)\bpypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}",
        )
    },
    token(
        "rubygems-api-key",
        &["rubygems_"],
        r"(?-u)\brubygems_[a-f0-9]{48}\b",
    ),
    token("crates-io-token", &["cio"], r"(?-u)\bcio[A-Za-z0-9]{32}\b"),
    token("nuget-api-key", &["oy2"], r"(?-u)\boy2[a-z0-9]{43}\b"),
    token(
        "docker-hub-token",
        &["dckr_pat_"],
        r"(?-u)\bdckr_pat_[A-Za-z0-9_-]{27}\b",
    ),
    RuleSpec {
        after: 128,
        ..token(
            "artifactory-token",
            &["akcp"],
            r"(?-u)\bAKCp[A-Za-z0-9]{69}\b",
        )
    },
    // --- Infrastructure and SaaS with documented prefixes.
    token(
        "digitalocean-token",
        &["dop_v1_", "doo_v1_", "dor_v1_"],
        r"(?-u)\bdo[opr]_v1_[a-f0-9]{64}\b",
    ),
    token(
        "doppler-token",
        &[
            "dp.pt.",
            "dp.st.",
            "dp.sa.",
            "dp.ct.",
            "dp.scim.",
            "dp.audit.",
        ],
        r"(?-u)\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9_.-]{40,}",
    ),
    token(
        "hashicorp-vault-token",
        &["hvs.", "hvb.", "hvr."],
        r"(?-u)\bhv[sbr]\.[A-Za-z0-9_-]{24,}",
    ),
    RuleSpec {
        before: 15,
        ..token(
            "terraform-cloud-token",
            &[".atlasv1."],
            r"(?-u)\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}",
        )
    },
    token(
        "grafana-token",
        &["glc_"],
        r"(?-u)\bglc_[A-Za-z0-9+/]{32,400}={0,2}",
    ),
    token(
        "grafana-token",
        &["glsa_"],
        r"(?-u)\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}\b",
    ),
    token(
        "grafana-token",
        &["eyjrijoi"],
        r"(?-u)\beyJrIjoi[A-Za-z0-9+/]{30,}={0,2}",
    ),
    RuleSpec {
        after: 2048,
        ..token(
            "sentry-token",
            &["sntrys_", "sntryu_"],
            r"(?-u)\bsntry[su]_[A-Za-z0-9+/=_]{40,}",
        )
    },
    token(
        "notion-token",
        &["ntn_"],
        r"(?-u)\bntn_[0-9]{11}[A-Za-z0-9]{35}\b",
    ),
    token(
        "notion-token",
        &["secret_"],
        r"(?-u)\bsecret_[A-Za-z0-9]{43}\b",
    ),
    RuleSpec {
        after: 512,
        ..token(
            "atlassian-api-token",
            &["atatt3", "atctt3"],
            r"(?-u)\bAT[AC]TT3[A-Za-z0-9_=-]{150,}",
        )
    },
    RuleSpec {
        after: 2048,
        ..token(
            "flyio-token",
            &["fm1a_", "fm1r_", "fm2_", "fo1_"],
            r"(?-u)\b(?:fm1[ar]|fm2|fo1)_[A-Za-z0-9+/=_-]{40,}",
        )
    },
    token(
        "age-secret-key",
        &["age-secret-key-1"],
        r"(?-u)\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b",
    ),
    RuleSpec {
        after: 4096,
        ..token(
            "1password-service-account-token",
            &["ops_eyj"],
            r"(?-u)\bops_eyJ[A-Za-z0-9+/=_-]{100,}",
        )
    },
    token(
        "1password-secret-key",
        &["a3-"],
        r"(?-u)\bA3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}\b",
    ),
    RuleSpec {
        after: 1024,
        ..token(
            "facebook-access-token",
            &["eaa"],
            r"(?-u)\bEAA[A-Za-z0-9]{90,}",
        )
    },
    token(
        "heroku-api-key",
        &["hrku-"],
        r"(?-u)\bHRKU-AA[A-Za-z0-9_-]{58}\b",
    ),
    token(
        "sonar-token",
        &["squ_", "sqp_", "sqa_"],
        r"(?-u)\bsq[upa]_[a-f0-9]{40}\b",
    ),
    token(
        "sourcegraph-token",
        &["sgp_", "sgs_"],
        r"(?-u)\bsg[ps]_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}\b",
    ),
    token(
        "dynatrace-token",
        &["dt0c01."],
        r"(?-u)\bdt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}\b",
    ),
    token(
        "new-relic-key",
        &["nrak-", "nrii-", "nriq-", "nrjs-", "nraa-"],
        r"(?-u)\bNR(?:AK|II|IQ|JS|AA)-[A-Za-z0-9]{20,}",
    ),
    RuleSpec {
        before: 37,
        // EU-region license keys start `eu01xx`.
        ..token(
            "new-relic-key",
            &["nral"],
            r"(?-u)\b(?:eu01xx[a-f0-9]{30}|[a-f0-9]{36})NRAL\b",
        )
    },
    token(
        "new-relic-key",
        &["px-api-", "px-dep-"],
        r"(?-u)\bpx-(?:api|dep)-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}\b",
    ),
    token("figma-token", &["figd_"], r"(?-u)\bfigd_[A-Za-z0-9_-]{40}"),
    RuleSpec {
        after: 1024,
        ..token(
            "mapbox-token",
            &["sk.eyj", "tk.eyj", "pk.eyj"],
            r"(?-u)\b[pst]k\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}",
        )
    },
    token(
        "clickhouse-api-secret",
        &["4b1d"],
        r"(?-u)\b4b1d[A-Za-z0-9]{38}\b",
    ),
    token("pulumi-token", &["pul-"], r"(?-u)\bpul-[a-f0-9]{40}\b"),
    token("prefect-token", &["pnu_"], r"(?-u)\bpnu_[A-Za-z0-9]{36}\b"),
    RuleSpec {
        before: 1,
        ..token(
            "infracost-token",
            &["ico-"],
            // Not a file name's `.ico-` (`favicon.ico-<hash>.png`).
            r"(?-u)(?:^|[^./A-Za-z0-9_-])(?P<s>ico-[A-Za-z0-9]{32})\b",
        )
    },
    token(
        "scalingo-token",
        &["tk-us-"],
        r"(?-u)\btk-us-[A-Za-z0-9_-]{48}\b",
    ),
    token("readme-token", &["rdme_"], r"(?-u)\brdme_[a-z0-9]{70}\b"),
    token(
        "octopus-deploy-key",
        &["api-"],
        r"(?-u)\bAPI-[A-Z0-9]{26}\b",
    ),
    token(
        "stackhawk-key",
        &["hawk."],
        r"(?-u)\bhawk\.[A-Za-z0-9_-]{20}\.[A-Za-z0-9_-]{20}\b",
    ),
    token(
        "adafruit-io-key",
        &["aio_"],
        r"(?-u)\baio_[A-Za-z0-9]{28}\b",
    ),
    token(
        "linear-api-key",
        &["lin_api_"],
        r"(?-u)\blin_api_[A-Za-z0-9]{40}\b",
    ),
    token(
        "postman-api-key",
        &["pmak-"],
        r"(?-u)\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b",
    ),
    token(
        "databricks-token",
        &["dapi"],
        r"(?-u)\bdapi[a-f0-9]{32}(?:-[0-9])?\b",
    ),
    token(
        "sendgrid-api-key",
        &["sg."],
        r"(?-u)\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",
    ),
    token("mailgun-api-key", &["key-"], r"(?-u)\bkey-[0-9a-f]{32}\b"),
    RuleSpec {
        before: 33,
        ..token(
            "mailchimp-api-key",
            &["-us"],
            r"(?-u)\b[0-9a-f]{32}-us[0-9]{1,2}\b",
        )
    },
    RuleSpec {
        before: 11,
        ..token(
            "telegram-bot-token",
            &[":aa"],
            r"(?-u)\b[0-9]{8,10}:AA[A-Za-z0-9_-]{32,33}\b",
        )
    },
    token(
        "twitch-stream-key",
        &["live_"],
        r"(?-u)\blive_[0-9]{6,}_[A-Za-z0-9]{30}\b",
    ),
    RuleSpec {
        after: 1024,
        ..token("dropbox-token", &["sl."], r"(?-u)\bsl\.[A-Za-z0-9_-]{130,}")
    },
    RuleSpec {
        after: 1024,
        ..token(
            "salesforce-token",
            &["00d"],
            r"(?-u)\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{80,}",
        )
    },
    token(
        "teams-webhook",
        &["webhook.office.com", "outlook.office.com/webhook"],
        r"(?-u)(?:[a-z0-9-]+\.webhook|outlook)\.office\.com/webhook(?:b2)?/(?P<s>[A-Za-z0-9@._/-]{40,})",
    ),
    token(
        "discord-webhook",
        &["/api/webhooks/"],
        r"(?-u)/api/webhooks/[0-9]{15,20}/(?P<s>[A-Za-z0-9_-]{60,})",
    ),
    // --- Vendors whose formats have a prefix, documented by the vendor.
    token("twilio-api-key", &["sk"], r"(?-u)\bSK[0-9a-fA-F]{32}\b"),
    token(
        "dependency-track-api-key",
        &["odt_"],
        r"(?-u)\bodt_[A-Za-z0-9]{32,}\b",
    ),
    token(
        "intra42-client-secret",
        &["s-s4t2ud-", "s-s4t2af-"],
        r"(?-u)\bs-s4t2(?:ud|af)-[a-f0-9]{64}\b",
    ),
    RuleSpec {
        after: 256,
        ..token(
            "cloudflare-origin-ca-key",
            &["v1.0-"],
            r"(?-u)\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}\b",
        )
    },
    RuleSpec {
        after: 512,
        ..token(
            "thingsboard-access-token",
            &["thingsboard"],
            r"(?i-u)thingsboard\.cloud/api/v1/(?P<s>[a-z0-9]{20})/",
        )
    },
    RuleSpec {
        after: 256,
        ..token(
            "truenas-api-key",
            &["login_with_api_key"],
            r#"(?-u)login_with_api_key"[^\[]{0,64}\[\s*"(?P<s>[0-9]+-[A-Za-z0-9]{64})""#,
        )
    },
    RuleSpec {
        after: 128,
        ..token(
            "hashicorp-vault-unseal-key",
            &["unseal"],
            r"(?i-u)\bunseal(?:[ \t]+key[ \t]+[0-9]+:)?[ \t]+(?P<s>[A-Za-z0-9+/]{43}[A-Za-z0-9+/=])(?:[^A-Za-z0-9+/=]|$)",
        )
    },
    // --- Vendors whose keys have no prefix: the vendor's name must come
    // first, close by, and the key must have its documented shape.
    RuleSpec {
        after: 160,
        ..token(
            "okta-api-token",
            &["okta", "ssws"],
            r"(?is-u)(?:\b|_)(?:okta|ssws).{0,80}?\b(?P<s>00[A-Za-z0-9_-]{40})(?:[^A-Za-z0-9_-]|$)",
        )
    },
    RuleSpec {
        after: 128,
        ..token(
            "sumologic-access-id",
            &["sumo"],
            r"(?-u)\b(?i:sumo(?:logic)?)(?:[_.-][A-Za-z0-9_.-]*|[A-Z][A-Za-z0-9_.-]*)?[^\r\nA-Za-z0-9]{1,8}(?P<s>su[A-Za-z0-9]{12})\b",
        )
    },
    RuleSpec {
        after: 160,
        ..token(
            "sumologic-access-key",
            &["sumo"],
            r"(?-u)\b(?i:sumo(?:logic)?)(?:[_.-][A-Za-z0-9_.-]*|[A-Z][A-Za-z0-9_.-]*)?[^\r\nA-Za-z0-9]{1,8}(?P<s>[A-Za-z0-9]{64})\b",
        )
    },
    RuleSpec {
        after: 128,
        ..token(
            "cloudflare-api-key",
            &["cloudflare"],
            r"(?i-u)cloudflare[a-z0-9_.-]*[^\r\nA-Za-z0-9]{1,8}(?-i:(?P<s>[a-f0-9]{37}|[A-Za-z0-9_-]{40}))(?:[^A-Za-z0-9_-]|$)",
        )
    },
    RuleSpec {
        after: 128,
        ..token(
            "facebook-access-token",
            &["facebook"],
            r"(?i-u)facebook[^\r\n]{0,40}?\b(?P<s>[0-9]{15,16}\|[A-Za-z0-9_-]{27,40})\b",
        )
    },
    RuleSpec {
        after: 128,
        ..token(
            "hashicorp-vault-token",
            &["vault"],
            r#"(?i-u)vault[a-z_.-]*["']?(?:[ \t]*[:=][ \t]*|[ \t]+)["'`]?(?-i:(?P<s>[sb]\.[A-Za-z0-9_-]{24,}))"#,
        )
    },
    RuleSpec {
        after: 128,
        ..token(
            "azure-devops-pat",
            &["ado_pat", "azdo", "devops"],
            r#"(?i-u)(?:ado_pat|azdo|devops)[a-z0-9_.-]*["']?[ \t]*[:=][ \t]*["']?(?-i:(?P<s>[a-z2-7]{52}))\b"#,
        )
    },
    // --- Password hashes: crackable offline, so as sensitive as the password.
    RuleSpec {
        check: Check::Pattern,
        ..token(
            "password-hash",
            &["$2a$", "$2b$", "$2y$", "$2x$"],
            r"(?-u)\$2[abxy]\$[0-9]{2}\$[./A-Za-z0-9]{53}",
        )
    },
    RuleSpec {
        check: Check::Pattern,
        ..token(
            "password-hash",
            &["$5$", "$6$"],
            r"(?-u)\$[56]\$(?:rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}",
        )
    },
    RuleSpec {
        check: Check::Pattern,
        ..token(
            "password-hash",
            &["$1$", "$apr1$"],
            r"(?-u)\$(?:1|apr1)\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}",
        )
    },
    RuleSpec {
        check: Check::Pattern,
        ..token(
            "password-hash",
            &["$8$", "$9$"],
            r"(?-u)\$[89]\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43}",
        )
    },
    RuleSpec {
        check: Check::Pattern,
        after: 4096,
        ..token(
            "password-hash",
            &["$krb5asrep$", "$krb5tgs$"],
            r"(?-u)\$krb5(?:asrep|tgs)\$[0-9]{2}\$[^\s:$]*[:$]?[^\s:$]*[:$]?[a-fA-F0-9]{32}\$[a-fA-F0-9]{64,}",
        )
    },
    // --- Structured secrets.
    RuleSpec {
        check: Check::Jwt,
        after: 8192,
        ..token(
            "jwt",
            &["eyj"],
            r"(?-u)\beyJ[A-Za-z0-9_-]{8,}={0,2}\.[A-Za-z0-9_-]{8,}={0,2}\.[A-Za-z0-9_-]*",
        )
    },
    RuleSpec {
        check: Check::PemBlock,
        after: 64,
        ..token(
            "private-key",
            &["-----begin"],
            r"(?-u)-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
        )
    },
    RuleSpec {
        check: Check::PemBase64,
        after: 16384,
        ..token(
            "private-key",
            &["ls0tls1crudjti"],
            r"(?-u)LS0tLS1CRUdJTi[A-Za-z0-9+/=]{60,}",
        )
    },
    RuleSpec {
        check: Check::SlotPassword,
        gate: Gate::UserInfo,
        before: 32,
        after: 512,
        priority: 1,
        ..token(
            "url-password",
            &["://"],
            r#"(?i-u)\b[a-z][a-z0-9+.-]{1,24}://[^\s:@/"'<>]{0,128}:(?P<s>[^\s@/"'<>]{1,256})@[a-z0-9_.\[-]"#,
        )
    },
    // A token as the URL's user, without a password (`git clone
    // https://TOKEN@host/...`): it must look random, a user name does not.
    RuleSpec {
        check: Check::Random,
        gate: Gate::UserInfo,
        before: 32,
        after: 512,
        priority: 1,
        ..token(
            "url-password",
            &["://"],
            r#"(?i-u)\b[a-z][a-z0-9+.-]{1,24}://(?P<s>[A-Za-z0-9_-]{20,256})@[a-z0-9_.\[-]"#,
        )
    },
    // ODBC, ADO.NET and JDBC connection strings: `;`-separated pairs, where
    // `Password=` or `Pwd=` holds the password whatever it spells.
    RuleSpec {
        check: Check::SlotPassword,
        gate: Gate::Assignment,
        before: 4,
        after: 160,
        priority: 1,
        ..token(
            "generic-password",
            &["pass", "pwd"],
            // `s`: after a `;`; `sq`: before `;` and another `Key=`.
            r#"(?i-u)(?:;[ \t]*(?:password|pwd)[ \t]*=[ \t]*(?P<s>[^;"'\s]{1,128})|\b(?:password|pwd)[ \t]*=[ \t]*(?P<sq>[^;"'\s]{1,128})[ \t]*;[ \t]*[a-z][a-z0-9 _]{0,30}=)"#,
        )
    },
    // Prose: `the password is 'hunter2'`, `the default password for user
    // "x" is "y"`: a quoted word after `is`.
    RuleSpec {
        check: Check::Password,
        gate: Gate::SaysIs,
        after: 128,
        priority: 2,
        ..token(
            "generic-password",
            &["pass"],
            r#"(?i-u)\bpass(?:word|wd)?\b[^\r\n.;:=]{0,48}?\bis[ \t]+(?:"(?P<dq>[^"\s]{3,64})"|'(?P<sq>[^'\s]{3,64})')"#,
        )
    },
    RuleSpec {
        check: Check::Random,
        after: 1024,
        priority: 1,
        ..token(
            "http-authorization",
            &["authorization"],
            r#"(?i-u)\b(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?(?:[a-z][a-z0-9_-]{0,20}[ \t]+)?(?P<s>[A-Za-z0-9._~+/=:@-]{8,})"#,
        )
    },
    RuleSpec {
        check: Check::Random,
        after: 1024,
        priority: 1,
        ..token(
            "http-authorization",
            &["bearer"],
            r"(?i-u)\bbearer[ \t]+(?P<s>[A-Za-z0-9._~+/-]{16,}=*)",
        )
    },
    RuleSpec {
        check: Check::Password,
        after: 1024,
        priority: 1,
        ..token(
            "cli-password",
            &["curl"],
            r#"(?i-u)\bcurl\b(?:[^\r\n]|\\\r?\n)*?[ \t](?:-u|--user)[ \t=]*["']?[^\s:"']*["']?:["']?(?P<s>[^\s"']+)"#,
        )
    },
    // `curl -u "KEY:"`: an API key as the user and no password (Stripe,
    // Elastic, Mailgun document this); it must look random.
    RuleSpec {
        check: Check::Random,
        after: 1024,
        priority: 1,
        ..token(
            "cli-password",
            &["curl"],
            r#"(?i-u)\bcurl\b(?:[^\r\n]|\\\r?\n)*?[ \t](?:-u|--user)[ \t=]*["']?(?P<s>[^\s:"']{8,}):["']?(?:[\s]|$)"#,
        )
    },
    RuleSpec {
        check: Check::Password,
        before: 256,
        priority: 1,
        ..token(
            "cli-password",
            &[" -p ", "\t-p "],
            r#"(?-u)[ \t]-u[ \t]+["']?[^\s"']+["']?[ \t]+-p[ \t]+(?:"(?P<dq>[^"\r\n]{1,128})"|'(?P<sq>[^'\r\n]{1,128})'|(?P<uq>[^\s"']{1,128}))"#,
        )
    },
    RuleSpec {
        check: Check::Password,
        before: 2,
        priority: 1,
        ..token(
            "cli-password",
            &["-pass"],
            r#"(?i-u)(?:^|[ \t])--?pass(?:word)?(?:[ \t]+|=)(?:"(?P<dq>[^"\r\n]{1,128})"|'(?P<sq>[^'\r\n]{1,128})'|(?P<uq>[^\s"'-][^\s"']{0,127}))"#,
        )
    },
    RuleSpec {
        check: Check::Password,
        after: 400,
        priority: 1,
        ..token(
            "netrc-password",
            &["machine"],
            r"(?-u)\bmachine[ \t]+\S+[ \t\r\n]+login[ \t]+\S+[ \t\r\n]+password[ \t]+(?P<s>\S+)",
        )
    },
    RuleSpec {
        check: Check::Password,
        after: 600,
        priority: 1,
        ..token(
            "code-credential",
            &["networkcredential"],
            r#"(?-u)NetworkCredential\([ \t]*"[^"\r\n]*"[ \t]*,[ \t]*"(?P<s>[^"\r\n]+)""#,
        )
    },
    RuleSpec {
        check: Check::Password,
        after: 600,
        priority: 1,
        ..token(
            "code-credential",
            &["directoryentry"],
            r#"(?-u)DirectoryEntry\([ \t]*"[^"\r\n]*"[ \t]*,[ \t]*"[^"\r\n]*"[ \t]*,[ \t]*"(?P<s>[^"\r\n]+)""#,
        )
    },
    RuleSpec {
        check: Check::Password,
        after: 400,
        priority: 1,
        ..token(
            "jenkins-setup-password",
            &["password to proceed"],
            r"(?i-u)password to proceed to installation:?\s+(?P<s>[a-f0-9]{32})\b",
        )
    },
    RuleSpec {
        check: Check::Password,
        priority: 1,
        ..token(
            "bundler-credentials",
            &["bundle_"],
            r#"(?-u)\bBUNDLE_[A-Z0-9_]+__[A-Z0-9_]+[ \t]*[:=][ \t]*["']?(?P<s>[^\s"':]+:[^\s"']+)"#,
        )
    },
    RuleSpec {
        check: Check::KubernetesSecret,
        before: 2048,
        after: 1024,
        priority: 1,
        ..token(
            "kubernetes-secret",
            &["data:"],
            // Other keys of `data` may come first; a value may sit on the
            // next line after a block scalar's `|` or `>`.
            r#"(?-u)\bdata:[ \t]*\r?\n(?:[ \t]+[^\r\n]*\r?\n){0,16}?[ \t]+["']?[A-Za-z0-9_.-]+["']?:[ \t]*(?:[|>][+-]?[ \t]*\r?\n[ \t]+)?["']?(?P<s>[A-Za-z0-9+/]{12,}={0,2})"#,
        )
    },
    // --- Generic assignments: `name = value` where the name says secret.
    RuleSpec {
        check: Check::Assignment,
        gate: Gate::Assignment,
        before: 64,
        after: 320,
        priority: 2,
        ..token(
            "generic-secret",
            ASSIGNMENT_ANCHORS,
            concat!(
                r#"(?i-u)"#,
                key_name!(),
                r#"["']?[ \t]*(?::=|=>|==|=|:)[ \t]*"#,
                value!()
            ),
        )
    },
    RuleSpec {
        check: Check::Assignment,
        gate: Gate::Assignment,
        before: 64,
        after: 320,
        priority: 2,
        ..token(
            "generic-secret",
            ASSIGNMENT_ANCHORS,
            concat!(
                r#"(?i-u)"#,
                key_name!(),
                r#"[ \t]*\(?[ \t]*(?:"(?P<dq>[^"\r\n]{1,256})"|'(?P<sq>[^'\r\n]{1,256})')"#
            ),
        )
    },
    RuleSpec {
        check: Check::Assignment,
        gate: Gate::Assignment,
        before: 96,
        after: 400,
        priority: 2,
        ..token(
            "generic-secret",
            ASSIGNMENT_ANCHORS,
            concat!(
                r#"(?i-u)(?:key|name)[ \t]*=[ \t]*["']"#,
                key_name!(),
                r#"["'][ \t]+value[ \t]*=[ \t]*(?:"(?P<dq>[^"\r\n]{1,256})"|'(?P<sq>[^'\r\n]{1,256})')"#
            ),
        )
    },
    RuleSpec {
        check: Check::Assignment,
        gate: Gate::Assignment,
        before: 2,
        after: 320,
        priority: 2,
        ..token(
            "generic-secret",
            ASSIGNMENT_ANCHORS,
            concat!(r#"(?i-u)<"#, key_name!(), r#">(?P<uq>[^<\s]{1,256})</"#),
        )
    },
    // A name and its value as two strings in a call or a list:
    // `getenv("API_TOKEN", "…")`, Gradle's `buildConfigField 'String',
    // 'API_KEY', '"…"'`.
    RuleSpec {
        check: Check::Assignment,
        gate: Gate::QuotedPair,
        before: 64,
        after: 320,
        priority: 2,
        ..token(
            "generic-secret",
            ASSIGNMENT_ANCHORS,
            concat!(
                r#"(?i-u)["']"#,
                key_name!(),
                r#"["'][ \t]*,[ \t]*["']\\?"?(?P<dq>[^"'\\\r\n]{1,256})\\?"?["']"#
            ),
        )
    },
];
