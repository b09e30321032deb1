//! Mail, reliably: a transactional outbox and the worker that delivers it.
//!
//! A change that must tell someone (a password changed, a verification link) writes its
//! [`Mail`] with [`enqueue`] in the same transaction as the change: both commit or neither
//! does, so no mail announces a change that rolled back and no committed change loses its
//! mail to a crash. The delivery worker ([`Postman`]) sends the rows later, from any
//! instance, with retries and exponential backoff, and gives up on a mail after
//! `MAIL_MAX_ATTEMPTS` (the dead-letter state administrators list).
//!
//! Mails are plain text. A link that carries a token puts it in the URL fragment
//! ([`link`]): browsers do not send fragments, so the token never reaches a server's access
//! log or a `Referer`. No address, body or token is ever logged.

mod delivery;
mod message;
mod notice;
mod outbox;

pub use self::{
    delivery::Postman,
    message::{Mail, MailKind, link},
    notice::{Notice, notify},
    outbox::{MailRecord, MailState, discard_unsent, enqueue, list, reseal},
};
