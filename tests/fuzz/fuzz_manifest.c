/*  fuzz_manifest.c — what a registry sends the preheat worker (actors/preheat/zf_manifest.c),
    on arbitrary bytes: as a manifest or index (with each Content-Type a registry may give), a
    WWW-Authenticate challenge, a token realm's answer, a registry error body and an image
    reference. An accepted manifest must hold only well-formed descriptors (sha256 digests,
    sizes within 2^53, platforms that match themselves); a refused one must say why. Crashes,
    sanitizer reports and leaks fail. */
#include "../../actors/preheat/zf_manifest.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void s_check_manifest (const zf_manifest_t *manifest)
{
    ZF_ASSERT (manifest->count <= ZF_MANIFEST_ITEMS_MAX);
    ZF_ASSERT (manifest->kind == ZF_MANIFEST_INDEX || manifest->count >= 1);
    for (size_t index = 0; index < manifest->count; index++) {
        const zf_descriptor_t *item = &manifest->items[index];
        ZF_ASSERT (zf_task_digest_valid (item->digest));
        ZF_ASSERT (item->size <= (UINT64_C (1) << 53));
        ZF_ASSERT (!*item->platform || zf_platform_valid (item->platform));
        ZF_ASSERT (!*item->platform || zf_platform_match (item->platform, item->platform));
    }
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    zf_error_t err;
    static const char *const content_types[] = {NULL, "application/json", ZF_MEDIA_OCI_INDEX,
                                                ZF_MEDIA_DOCKER_V2};
    for (size_t index = 0; index < ZF_ARRAY_LEN (content_types); index++) {
        zf_manifest_t *manifest = zf_manifest_parse (text, size, content_types[index], &err);
        if (manifest)
            s_check_manifest (manifest);
        else
            ZF_ASSERT (*err.message);
        zf_manifest_destroy (&manifest);
    }
    char *token = zf_token_answer_parse (text, size, &err);
    ZF_ASSERT (!token || (*token && !strchr (token, ' ')));
    zf_free (token);
    char message[128];
    if (zf_registry_error_text (text, size, message, sizeof message))
        ZF_ASSERT (strlen (message) < sizeof message && !strchr (message, '\n'));

    //  The string parsers take NUL-terminated text: a copy, cut at the first NUL.
    char *copy = zf_strndup (text, size < 8192 ? size : 8192);
    zf_challenge_t challenge;
    if (zf_challenge_parse (copy, &challenge, &err) == ZF_OK)
        ZF_ASSERT (*challenge.scheme && strlen (challenge.realm) < sizeof challenge.realm);
    zf_image_ref_t ref;
    if (zf_image_ref_parse (copy, "https", &ref, &err) == ZF_OK) {
        char *url = zf_image_ref_manifest_url (&ref, ref.reference);
        zf_image_ref_t again;
        ZF_ASSERT (zf_image_ref_parse (url, NULL, &again, &err) == ZF_OK);
        ZF_ASSERT (streq (again.repository, ref.repository) && streq (again.host, ref.host));
        ZF_ASSERT (streq (again.reference, ref.reference));
        zf_free (url);
    } else
        ZF_ASSERT (*err.message);
    zf_platform_valid (copy);
    zf_free (copy);
    return 0;
}
