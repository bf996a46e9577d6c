/* What llama.cpp makes of a GGUF file, for bench/llamacpp.py to hold against transformers:
 * the prompt's token ids (llama.cpp's own tokenizer, special tokens parsed as in a chat
 * template), the logits at the prompt's last position (written as float32 to LOGITS_OUT), and
 * N_PREDICT greedy tokens (argmax, stopping at an end-of-generation token).
 *
 *   llamacpp_probe MODEL.gguf PROMPT_FILE N_PREDICT LOGITS_OUT
 *
 * Prints two lines on stdout: "prompt <ids>" and "greedy <ids>". Built against libllama by the
 * bench; written for align, against llama.h's public API only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static char *read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(*size + 1);
    if (fread(text, 1, *size, f) != (size_t)*size) { fclose(f); free(text); return NULL; }
    text[*size] = 0;
    fclose(f);
    return text;
}

static llama_token argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT_FILE N_PREDICT LOGITS_OUT\n", argv[0]);
        return 2;
    }
    long size = 0;
    char *text = read_file(argv[2], &size);
    int n_predict = atoi(argv[3]);
    if (!text) { fprintf(stderr, "cannot read %s\n", argv[2]); return 2; }

    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], model_params);
    if (!model) { fprintf(stderr, "llama.cpp could not load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);

    int n_prompt = -llama_tokenize(vocab, text, (int32_t)size, NULL, 0, true, true);
    llama_token *tokens = malloc(sizeof(llama_token) * (n_prompt + n_predict + 1));
    if (llama_tokenize(vocab, text, (int32_t)size, tokens, n_prompt, true, true) < 0) {
        fprintf(stderr, "tokenization failed\n");
        return 1;
    }
    printf("prompt");
    for (int i = 0; i < n_prompt; i++) printf(" %d", tokens[i]);
    printf("\n");

    struct llama_context_params context_params = llama_context_default_params();
    context_params.n_ctx = n_prompt + n_predict + 8;
    context_params.n_batch = n_prompt + 8;
    context_params.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, context_params);
    if (!ctx) { fprintf(stderr, "could not create a context\n"); return 1; }

    if (llama_decode(ctx, llama_batch_get_one(tokens, n_prompt)) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
    float *logits = llama_get_logits_ith(ctx, -1);
    FILE *out = fopen(argv[4], "wb");
    if (!out || fwrite(logits, sizeof(float), n_vocab, out) != (size_t)n_vocab) { fprintf(stderr, "cannot write logits\n"); return 1; }
    fclose(out);

    printf("greedy");
    for (int i = 0; i < n_predict; i++) {
        llama_token next = argmax(logits, n_vocab);
        printf(" %d", next);
        if (llama_vocab_is_eog(vocab, next)) break;
        if (llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        logits = llama_get_logits_ith(ctx, -1);
    }
    printf("\n");
    llama_free(ctx);
    llama_model_free(model);
    free(tokens);
    free(text);
    return 0;
}
