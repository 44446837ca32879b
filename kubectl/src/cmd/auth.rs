//! `auth whoami`: who the apiserver says the kubeconfig's credentials are (a
//! `SelfSubjectReview`), printed as stock kubectl prints it.

use serde_json::{Value, json};

use crate::client::{Ctx, Error, Result};

/// `kubectl auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Experimental: check self subject attributes.
    Whoami {
        /// Output format: json or yaml (default: a table).
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
}

/// Runs an `auth` command.
pub async fn run(ctx: &Ctx, command: &AuthCommand) -> Result<()> {
    match command {
        AuthCommand::Whoami { output } => whoami(ctx, output.as_deref()).await,
    }
}

async fn whoami(ctx: &Ctx, output: Option<&str>) -> Result<()> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}});
    let answer = ctx.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review).await?;
    match output {
        Some("json") => println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default()),
        Some("yaml") => print!("{}", crate::yaml::to_string(&answer)),
        Some(other) => {
            return Err(Error::Other(anyhow::anyhow!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,yaml"
            )));
        }
        None => print!("{}", table(&answer)),
    }
    Ok(())
}

/// Stock kubectl's table: Username, UID, Groups, then each Extra.
fn table(answer: &Value) -> String {
    let user = answer.pointer("/status/userInfo").cloned().unwrap_or_default();
    let mut text = String::from("ATTRIBUTE\tVALUE\n");
    if let Some(name) = user.get("username").and_then(Value::as_str) {
        text.push_str(&format!("Username\t{name}\n"));
    }
    if let Some(uid) = user.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        text.push_str(&format!("UID\t{uid}\n"));
    }
    let list = |v: &Value| -> String {
        let items: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        format!("[{}]", items.join(" "))
    };
    if let Some(groups) = user.get("groups") {
        text.push_str(&format!("Groups\t{}\n", list(groups)));
    }
    if let Some(extra) = user.get("extra").and_then(Value::as_object) {
        let mut keys: Vec<&String> = extra.keys().collect();
        keys.sort();
        for k in keys {
            text.push_str(&format!("Extra: {k}\t{}\n", list(&extra[k])));
        }
    }
    crate::tabwriter::format(&text, 0, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_stock_kubectls() {
        let answer = json!({"status": {"userInfo": {"username": "alice", "groups": ["devs", "system:authenticated"]}}});
        assert_eq!(table(&answer), "ATTRIBUTE   VALUE\nUsername    alice\nGroups      [devs system:authenticated]\n");
    }
}
