use super::*;
use troupe_model::tokenizer::{ASSISTANT, BOS, END, TOOL, USER};

fn task() -> TaskSpec {
    TaskSpec {
        id: 1,
        prompt: "7*6".into(),
        answer: "42".into(),
        difficulty: 1,
    }
}

fn generation(tokens: Vec<TokenId>) -> Generation {
    let logprobs = (0..tokens.len()).map(|i| -0.1 * (i + 1) as f32).collect();
    Generation {
        tokens,
        logprobs,
        finished: true,
    }
}

fn bytes(s: &str) -> Vec<TokenId> {
    s.bytes().map(TokenId::from).collect()
}

#[test]
fn multi_turn_trajectory_is_the_concatenation_of_what_was_generated_and_observed() {
    let tok = ChatTokenizer::new();
    let mut ep = Episode::start(5, task(), Purpose::Eval { round: 0 }, "7*6", tok.clone());
    // The call as generated, then a second turn whose tokens are not what encoding its
    // decoded text would give: a stray BOS (skipped by decode) and a lone 0xff byte
    // (decoded as U+FFFD, which re-encodes as three bytes). Token-in/token-out keeps them.
    let mut call = bytes("<call>calc 7*6</call>");
    call.push(END);
    let answer = vec![52, BOS, 50, 0xff, END];
    let g1 = generation(call.clone());
    let g2 = generation(answer.clone());

    assert_eq!(
        ep.push_generation(&g1, PolicyVersion(3)),
        "<call>calc 7*6</call>"
    );
    assert_eq!(
        ep.push_observation(Author::Tool, "42", 64).unwrap(),
        Appended::Yes
    );
    let text = ep.push_generation(&g2, PolicyVersion(4));
    assert_eq!(text, "42\u{fffd}");
    assert_ne!(tok.encode_text(&text), answer[..answer.len() - 1].to_vec());
    assert_eq!(ep.policy_turns(), 2);
    let t = ep.finish();

    let prompt = tok.generation_prompt("7*6");
    let observed = tok.observation_as(TurnRole::Tool, "42");
    assert_eq!(observed, vec![TOOL, 52, 50, END, ASSISTANT]);
    let expected: Vec<TokenId> = [&prompt[..], &call, &observed, &answer].concat();
    assert_eq!(t.tokens, expected);

    // Only the policy's tokens are marked, with their log-probs and versions.
    let policy: Vec<u8> = [
        vec![0; prompt.len()],
        vec![1; call.len()],
        vec![0; observed.len()],
        vec![1; answer.len()],
    ]
    .concat();
    assert_eq!(t.policy, policy);
    assert_eq!(t.policy_token_count(), call.len() + answer.len());
    let at = |i: usize| (t.logprobs[i], t.versions[i]);
    assert_eq!(at(prompt.len()), (-0.1, 3));
    let second = prompt.len() + call.len() + observed.len();
    assert_eq!(at(second + 1), (-0.2, 4));
    assert_eq!(at(second - 1), (0.0, u64::MAX));
    assert_eq!(t.oldest_version(), Some(PolicyVersion(3)));

    // The turn structure: who wrote what, and each turn's exact tokens.
    let authors: Vec<Author> = t.turns.iter().map(|x| x.author).collect();
    assert_eq!(
        authors,
        [Author::User, Author::Policy, Author::Tool, Author::Policy]
    );
    assert_eq!(t.turn_tokens(0), prompt.as_slice());
    assert_eq!(t.turn_tokens(1), call.as_slice());
    assert_eq!(t.turn_tokens(2), observed.as_slice());
    assert_eq!(t.turn_tokens(3), answer.as_slice());
    assert_eq!(
        t.actions().collect::<Vec<_>>(),
        ["<call>calc 7*6</call>", "42\u{fffd}"]
    );
    assert_eq!(t.response, "42\u{fffd}");
}

#[test]
fn sampled_episode_matches_the_supervised_encoding_of_the_same_conversation() {
    // SFT on seed conversations and RL on sampled episodes see the same tokens and
    // train the same positions (up to the separator after the last turn).
    let tok = ChatTokenizer::new();
    let mut ep = Episode::start(1, task(), Purpose::Eval { round: 0 }, "7*6", tok.clone());
    let mut call = bytes("<call>calc 7*6</call>");
    call.push(END);
    ep.push_generation(&generation(call), PolicyVersion(0));
    ep.push_observation(Author::Tool, "42", 64).unwrap();
    ep.push_generation(&generation(vec![52, 50, END]), PolicyVersion(0));
    let t = ep.finish();
    let (tokens, mask) = tok.encode_conversation(&[
        (TurnRole::User, "7*6"),
        (TurnRole::Assistant, "<call>calc 7*6</call>"),
        (TurnRole::Tool, "42"),
        (TurnRole::Assistant, "42"),
    ]);
    assert_eq!(t.tokens, tokens);
    assert_eq!(t.policy, mask);
}

#[test]
fn user_observations_use_the_user_role() {
    let tok = ChatTokenizer::new();
    let mut ep = Episode::start(1, task(), Purpose::Eval { round: 0 }, "q", tok);
    ep.push_generation(&generation(vec![97, END]), PolicyVersion(0));
    ep.push_observation(Author::User, "again", 64).unwrap();
    let t = ep.finish();
    assert_eq!(t.turn_tokens(2)[0], USER);
    assert_eq!(t.turns[2].author, Author::User);
    assert_eq!(*t.tokens.last().unwrap(), ASSISTANT);
}

#[test]
fn an_observation_that_leaves_no_room_ends_the_episode_unchanged() {
    let tok = ChatTokenizer::new();
    let mut ep = Episode::start(1, task(), Purpose::Eval { round: 0 }, "7*6", tok);
    ep.push_generation(&generation(vec![97, END]), PolicyVersion(0));
    let before = ep.context().len();
    // 5 template/observation tokens: fits exactly with one token to spare at before + 6.
    assert_eq!(
        ep.clone()
            .push_observation(Author::Tool, "42", before + 6)
            .unwrap(),
        Appended::Yes
    );
    assert_eq!(
        ep.push_observation(Author::Tool, "42", before + 5).unwrap(),
        Appended::NoRoom
    );
    let t = ep.finish();
    assert_eq!(t.tokens.len(), before);
    assert_eq!(t.turns.len(), 2);
}

#[test]
fn an_observation_cannot_claim_to_be_the_policy() {
    let mut ep = Episode::start(
        1,
        task(),
        Purpose::Eval { round: 0 },
        "7*6",
        ChatTokenizer::new(),
    );
    assert!(matches!(
        ep.push_observation(Author::Policy, "x", 64),
        Err(SamplerError::PolicyObservation)
    ));
}

#[test]
fn episode_keeps_tokens_exact_and_marks_policy_tokens() {
    let task = TaskSpec {
        id: 1,
        prompt: "sort 21".into(),
        answer: "12".into(),
        difficulty: 2,
    };
    let mut ep = Episode::start(
        5,
        task,
        Purpose::Eval { round: 0 },
        "sort 21",
        ChatTokenizer::new(),
    );
    let before = ep.context().to_vec();
    let g = Generation {
        tokens: vec![49, 50, troupe_model::tokenizer::END],
        logprobs: vec![-0.1, -0.2, -0.3],
        finished: true,
    };
    assert_eq!(ep.push_generation(&g, PolicyVersion(2)), "12");
    let len = ep.context().len();
    // "again" takes a user turn (opener, 5 bytes, end) and the assistant opener.
    assert!(ep.observation_fits(Author::User, "again", len + 8 + 4, 4));
    assert!(!ep.observation_fits(Author::User, "again", len + 8 + 3, 4));
    assert_eq!(
        ep.push_observation(Author::User, "again", len + 8 + 4)
            .unwrap(),
        Appended::Yes
    );
    let t = ep.finish();
    assert_eq!(&t.tokens[..before.len()], before.as_slice());
    assert_eq!(t.policy_token_count(), 3);
    assert_eq!(t.oldest_version(), Some(PolicyVersion(2)));
    assert_eq!(t.logprobs[before.len() + 1], -0.2);
    assert_eq!(t.response, "12");
}

#[test]
fn a_submission_replaces_the_response() {
    let task = TaskSpec {
        id: 1,
        prompt: "fix it".into(),
        answer: "codefix/off_by_one/1".into(),
        difficulty: 0,
    };
    let mut ep = Episode::start(
        1,
        task,
        Purpose::Eval { round: 0 },
        "fix it",
        ChatTokenizer::new(),
    );
    let g = Generation {
        tokens: vec![60, troupe_model::tokenizer::END],
        logprobs: vec![-0.1, -0.2],
        finished: true,
    };
    ep.push_generation(&g, PolicyVersion(1));
    ep.set_response("diff --git a/x b/x".into());
    assert_eq!(ep.finish().response, "diff --git a/x b/x");
}
