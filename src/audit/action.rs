//! What happened: every action the audit trail records, spelled once.

use crate::vocabulary::vocabulary;

vocabulary! {
    /// An audit action, stored and filtered by its dotted name (`auth.login`).
    ///
    /// Stored rows keep their action for the whole retention, so a word is never removed or
    /// respelled: the admin listing could not read those rows back.
    pub enum AuditAction {
        Login = "auth.login",
        Logout = "auth.logout",
        Refresh = "auth.refresh",
        /// A rotated refresh token came back: its session is revoked.
        RefreshReuse = "auth.refresh_reuse",
        /// A user ended one of their sessions from the session list.
        SessionEnd = "auth.session_end",
        /// A session went unused for longer than `SESSION_IDLE_TIMEOUT_SECS`.
        SessionIdle = "auth.session_idle",
        Register = "user.register",
        /// An administrator created from the command line.
        CreateAdmin = "user.create_admin",
        PasswordChange = "user.password_change",
        /// The user deleted their own account (its id stays; nothing personal does).
        AccountDelete = "user.delete",
        /// A mailed verification link was opened (or a bad one tried).
        EmailVerify = "user.email_verify",
        /// Someone asked for a new verification link; the reason says whether one was sent.
        EmailVerificationResend = "user.email_verification_resend",
        /// Someone asked for a password-reset link; the reason says whether one was sent.
        PasswordResetRequest = "user.password_reset_request",
        /// A password was set through a reset link (or a bad link tried).
        PasswordReset = "user.password_reset",
        /// A correct password of an account with MFA: a second-factor challenge was issued.
        MfaChallenge = "auth.mfa_challenge",
        /// A wrong TOTP or recovery code (login, confirmation, disable).
        MfaCodeFailure = "auth.mfa_code_failure",
        /// A recovery code was spent; the reason says how many are left.
        RecoveryCodeUse = "auth.recovery_code_use",
        /// A TOTP enrolment started (pending until confirmed).
        MfaEnrol = "user.mfa_enrol",
        /// A TOTP enrolment was confirmed with a code: MFA is on, recovery codes issued.
        MfaConfirm = "user.mfa_confirm",
        /// TOTP was turned off (with the password and a code).
        MfaDisable = "user.mfa_disable",
        /// A change of address asked for (the new address is mailed a link).
        EmailChangeRequest = "user.email_change_request",
        /// A change of address confirmed from the link: the account has its new address.
        EmailChange = "user.email_change",
        RoleChange = "admin.role_change",
        UserDisable = "admin.user_disable",
        UserEnable = "admin.user_enable",
        /// An administrator ended a user's session.
        AdminSessionEnd = "admin.session_end",
        FilmCreate = "film.create",
        FilmUpdate = "film.update",
        FilmDelete = "film.delete",
        ApiKeyCreate = "api_key.create",
        ApiKeyRevoke = "api_key.revoke",
        SuspiciousLogin = "security.suspicious_login",
        /// `filmvault rotate-signing-key`: a new access-token signing key is current.
        SigningKeyRotate = "security.signing_key_rotate",
        /// A 401 its handler did not record more specifically.
        Unauthenticated = "http.unauthenticated",
        /// A 403 its handler did not record more specifically.
        Forbidden = "http.forbidden",
        /// A 429.
        RateLimited = "http.rate_limited",
        /// Events past their retention were deleted.
        Prune = "audit.prune",
    }
}
