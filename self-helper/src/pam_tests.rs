use super::*;

/// A prompter with scripted answers that records what it was shown.
#[derive(Default)]
struct Script {
    answers: Vec<&'static str>,
    asked: Vec<(String, bool)>,
    shown: Vec<String>,
}

impl Prompter for Script {
    fn ask(&mut self, text: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.asked.push((text.into(), echo));
        if self.answers.is_empty() {
            return Err(ConvError);
        }
        Ok(Zeroizing::new(self.answers.remove(0).as_bytes().to_vec()))
    }

    fn show(&mut self, text: &str) -> Result<(), ConvError> {
        self.shown.push(text.into());
        Ok(())
    }
}

/// Calls the callback as libpam does, with `messages`; the code and the answers it returned
/// (the responses freed as libpam frees them).
fn call(script: &mut Script, messages: &[(c_int, &CStr)]) -> (c_int, Vec<Option<Vec<u8>>>) {
    let msgs: Vec<PamMessage> = messages
        .iter()
        .map(|(style, text)| PamMessage {
            msg_style: *style,
            msg: text.as_ptr(),
        })
        .collect();
    let mut ptrs: Vec<*const PamMessage> = msgs.iter().map(|m| m as *const _).collect();
    let mut resp: *mut PamResponse = ptr::null_mut();
    let mut data = ConvData { prompter: script };
    // SAFETY: the layout pam_conv(3) describes, all alive for the call.
    let rc = unsafe {
        converse(
            ptrs.len() as c_int,
            ptrs.as_mut_ptr(),
            &mut resp,
            ptr::addr_of_mut!(data).cast(),
        )
    };
    let mut out = Vec::new();
    if !resp.is_null() {
        for i in 0..messages.len() {
            // SAFETY: the callback returned messages.len() responses.
            let r = unsafe { &*resp.add(i) };
            // SAFETY: NULL or a NUL-terminated string it malloc'd.
            out.push(
                (!r.resp.is_null()).then(|| unsafe { CStr::from_ptr(r.resp) }.to_bytes().to_vec()),
            );
        }
        // SAFETY: as libpam frees them.
        unsafe { free_responses(resp, messages.len()) };
    }
    (rc, out)
}

#[test]
fn given_prompts_and_texts_then_each_is_relayed_and_answered_in_order() {
    let mut s = Script {
        answers: vec!["hunter2", "alice"],
        ..Script::default()
    };
    let (rc, out) = call(
        &mut s,
        &[
            (PAM_TEXT_INFO, c"Welcome"),
            (PAM_PROMPT_ECHO_OFF, c"Password: "),
            (PAM_ERROR_MSG, c"Careful"),
            (PAM_PROMPT_ECHO_ON, c"Login: "),
        ],
    );
    assert_eq!(rc, PAM_SUCCESS);
    assert_eq!(
        out,
        vec![
            None,
            Some(b"hunter2".to_vec()),
            None,
            Some(b"alice".to_vec())
        ]
    );
    assert_eq!(
        s.asked,
        vec![("Password: ".into(), false), ("Login: ".into(), true)]
    );
    assert_eq!(s.shown, vec!["Welcome".to_string(), "Careful".to_string()]);
}

#[test]
fn given_a_cancelled_prompt_then_conversation_error_and_no_responses() {
    let mut s = Script::default();
    let (rc, out) = call(&mut s, &[(PAM_PROMPT_ECHO_OFF, c"Password: ")]);
    assert_eq!(rc, PAM_CONV_ERR);
    assert!(out.is_empty());
}

#[test]
fn given_odd_messages_then_conversation_error() {
    // Binary and radio prompts are not relayed; an answer with a NUL cannot be a C string.
    let mut s = Script::default();
    assert_eq!(call(&mut s, &[(5, c"radio")]).0, PAM_CONV_ERR);
    assert_eq!(call(&mut s, &[(7, c"binary")]).0, PAM_CONV_ERR);
    let mut s = Script {
        answers: vec!["a\0b"],
        ..Script::default()
    };
    assert_eq!(
        call(&mut s, &[(PAM_PROMPT_ECHO_OFF, c"P: ")]).0,
        PAM_CONV_ERR
    );
}

#[test]
fn given_bad_arguments_then_conversation_error_without_touching_them() {
    let mut s = Script::default();
    let mut data = ConvData { prompter: &mut s };
    let mut resp: *mut PamResponse = ptr::null_mut();
    let app: *mut c_void = ptr::addr_of_mut!(data).cast();
    // SAFETY: the callback must reject these before dereferencing anything but `resp`.
    unsafe {
        assert_eq!(converse(0, ptr::null_mut(), &mut resp, app), PAM_CONV_ERR);
        assert_eq!(converse(33, ptr::null_mut(), &mut resp, app), PAM_CONV_ERR);
        assert_eq!(
            converse(1, ptr::null_mut(), ptr::null_mut(), app),
            PAM_CONV_ERR
        );
        let mut null_msg: *const PamMessage = ptr::null();
        assert_eq!(converse(1, &mut null_msg, &mut resp, app), PAM_CONV_ERR);
    }
    assert!(resp.is_null());
}

#[test]
fn given_failures_then_the_user_reads_why() {
    assert_eq!(
        Failure::Password.to_string(),
        "wrong password (or the account is locked)"
    );
    assert!(Failure::Account {
        code: PAM_NEW_AUTHTOK_REQD,
        text: String::new()
    }
    .to_string()
    .contains("expired"));
}
