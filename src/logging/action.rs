//! The names a log line can start with (`action: <name>`) and the three
//! results it can report: the first two fields of every line. The course's
//! names are Spanish where the course gave them (`apuesta_recibida`,
//! `sorteo`), English for what it did not ask for.

/// Every action a line can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    AgenciaFinalizada,
    AgencyKey,
    ApuestaAlmacenada,
    ApuestaDuplicada,
    ApuestaEnviada,
    ApuestaInvalida,
    ApuestaRecibida,
    Auth,
    BatchEnviado,
    Bind,
    Bye,
    Challenge,
    Client,
    CloseConnection,
    CloseConnections,
    CloseFile,
    CloseListener,
    CloseSocket,
    CloseStorage,
    CloseThreadPool,
    Commit,
    CommitLookup,
    Config,
    Connect,
    ConsultaGanadores,
    Decode,
    Encode,
    Ganadores,
    GanadoresEnviados,
    Hello,
    Ingesta,
    Listen,
    Progreso,
    Reconnect,
    Recovery,
    Request,
    Resumen,
    Secret,
    Server,
    Shutdown,
    Signal,
    SignalHandler,
    Sorteo,
    Storage,
    StorageCheck,
    StorageOpen,
    StorageRebuildJournal,
    StorageSchema,
    StorageTruncate,
    StorageUpgrade,
}

impl Action {
    /// The name as the line writes it, after `action: `.
    pub fn name(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::AgenciaFinalizada => "agencia_finalizada",
            Action::AgencyKey => "agency_key",
            Action::ApuestaAlmacenada => "apuesta_almacenada",
            Action::ApuestaDuplicada => "apuesta_duplicada",
            Action::ApuestaEnviada => "apuesta_enviada",
            Action::ApuestaInvalida => "apuesta_invalida",
            Action::ApuestaRecibida => "apuesta_recibida",
            Action::Auth => "auth",
            Action::BatchEnviado => "batch_enviado",
            Action::Bind => "bind",
            Action::Bye => "bye",
            Action::Challenge => "challenge",
            Action::Client => "client",
            Action::CloseConnection => "close_connection",
            Action::CloseConnections => "close_connections",
            Action::CloseFile => "close_file",
            Action::CloseListener => "close_listener",
            Action::CloseSocket => "close_socket",
            Action::CloseStorage => "close_storage",
            Action::CloseThreadPool => "close_thread_pool",
            Action::Commit => "commit",
            Action::CommitLookup => "commit_lookup",
            Action::Config => "config",
            Action::Connect => "connect",
            Action::ConsultaGanadores => "consulta_ganadores",
            Action::Decode => "decode",
            Action::Encode => "encode",
            Action::Ganadores => "ganadores",
            Action::GanadoresEnviados => "ganadores_enviados",
            Action::Hello => "hello",
            Action::Ingesta => "ingesta",
            Action::Listen => "listen",
            Action::Progreso => "progreso",
            Action::Reconnect => "reconnect",
            Action::Recovery => "recovery",
            Action::Request => "request",
            Action::Resumen => "resumen",
            Action::Secret => "secret",
            Action::Server => "server",
            Action::Shutdown => "shutdown",
            Action::Signal => "signal",
            Action::SignalHandler => "signal_handler",
            Action::Sorteo => "sorteo",
            Action::Storage => "storage",
            Action::StorageCheck => "storage_check",
            Action::StorageOpen => "storage_open",
            Action::StorageRebuildJournal => "storage_rebuild_journal",
            Action::StorageSchema => "storage_schema",
            Action::StorageTruncate => "storage_truncate",
            Action::StorageUpgrade => "storage_upgrade",
        }
    }
}

/// The line's `result:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Fail,
    InProgress,
}

impl Outcome {
    /// The word as the line writes it, after `result: `.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Fail => "fail",
            Outcome::InProgress => "in_progress",
        }
    }

    /// The outcome a line's `result:` names.
    pub fn from_name(name: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Fail, Outcome::InProgress]
            .into_iter()
            .find(|o| o.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_from_their_names() {
        for o in [Outcome::Success, Outcome::Fail, Outcome::InProgress] {
            assert_eq!(Outcome::from_name(o.name()), Some(o));
        }
        assert_eq!(Outcome::from_name("ok"), None);
    }
}
